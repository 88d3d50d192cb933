"""Fast-path fallbacks are counted (issue #12): an input the byte-level fast path hands to the
reference path shows as a number in the outcome, the run summary, the report JSON and the
CLI summary, so a fast-path bug shows up as a number, not only as lost speed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from dicomveil.cli.main import main
from dicomveil.demo import write_demo_study
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.rules import compile_policy
from dicomveil.pipeline import files
from dicomveil.pipeline.run import run_deidentification
from dicomveil.profile.policy import Policy

SECRET = b"fallback-test-secret-0123456789ab"


def _big_endian(folder: Path) -> Path:
    """A file the fast path declines (Explicit VR Big Endian)."""
    source = get_testdata_file("MR_small_bigendian.dcm")
    assert source is not None
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(source, folder / "be.dcm"))


def test_a_declined_input_is_counted_in_the_report_and_summary(
    demo_study: Path, tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _big_endian(demo_study)
    dest = tmp_path / "out"
    assert main(["deid", str(demo_study), str(dest), "--key-file", str(key_file), "-j", "1"]) == 0
    report = json.loads((dest / "dicomveil-report.json").read_text())
    assert report["files"]["ok"] == 19
    assert report["fast_path_fallbacks"] == 1 and report["fast_path_errors"] == 0
    assert "1 by the reference path" in " ".join(capsys.readouterr().err.split())


def test_a_fast_path_error_is_counted_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fast path that raises (a bug) still gives the reference output, and is counted."""
    source = _big_endian(tmp_path / "one")
    (demo,) = write_demo_study(
        tmp_path / "one", patients=1, series_per_study=1, images_per_series=1
    )

    def broken(*_args: object, **_kwargs: object) -> None:
        raise IndexError("a fast-path bug")

    compiled, keys = compile_policy(Policy()), PseudonymKeys(SECRET)
    fine = files.deidentify_file(demo, tmp_path / "ref", compiled, keys)
    assert fine.status == "ok" and fine.fallback == ""
    monkeypatch.setattr(files, "deidentify_encoded", broken)
    outcome = files.deidentify_file(demo, tmp_path / "out", compiled, keys)
    assert outcome.status == "ok" and outcome.fallback == "error"
    assert (tmp_path / "out" / outcome.output).read_bytes() == (
        tmp_path / "ref" / fine.output
    ).read_bytes()
    summary = run_deidentification([source, demo], tmp_path / "run", Policy(), SECRET, workers=1)
    assert summary.ok == 2 and summary.fallbacks == 2 and summary.fast_path_errors == 1
