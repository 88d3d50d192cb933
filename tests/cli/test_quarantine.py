"""``dicomveil quarantine list/show/purge``: the quarantined runs, PHI-free."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dicomveil.cli.main import main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_list_show_purge(
    demo_study: Path, tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = sorted(demo_study.glob("*/*/*.dcm"))[0]
    (demo_study / "DOE_JOHN_cut.dcm").write_bytes(good.read_bytes()[:300])
    (demo_study / "DOE_JOHN.txt").write_text("DOE JOHN")
    assert main(["quarantine", "list"]) == 0
    assert "empty" in capsys.readouterr().err
    argv = ["deid", str(demo_study), str(tmp_path / "out"), "--key-file", str(key_file)]
    assert main([*argv, "-j", "1"]) == 1
    capsys.readouterr()

    assert main(["quarantine", "list", "--json"]) == 0
    (run,) = json.loads(capsys.readouterr().out)
    assert run["inputs"] == 2 and run["copies"] == 1 and run["bytes"] == 300
    assert main(["quarantine", "list"]) == 0
    out = capsys.readouterr().out
    assert run["run_id"] in out and "2 input(s)" in out and "1 copied" in out

    assert main(["quarantine", "show", run["run_id"], "--json"]) == 0
    shown = capsys.readouterr()
    assert "DOE" not in shown.out + shown.err  # PHI-free: no source path
    inputs = json.loads(shown.out)["inputs"]
    reasons = sorted(i["not_copied"] or "copied" for i in inputs)
    assert reasons == ["copied", "not DICOM (listed by hash only)"]
    assert all(len(i["sha256"]) == 64 for i in inputs)
    assert main(["quarantine", "show", run["run_id"]]) == 0
    assert "truncated" in capsys.readouterr().out
    assert main(["quarantine", "show", run["run_id"], "--paths"]) == 0
    assert "DOE_JOHN_cut.dcm" in capsys.readouterr().out  # on request only
    assert main(["quarantine", "show", "0" * 32]) == 2

    assert main(["quarantine", "purge"]) == 0  # 30 days by default: nothing that recent
    assert main(["quarantine", "list", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1
    assert main(["quarantine", "purge", "--older-than", "0"]) == 0
    assert "removed 1 " in capsys.readouterr().err
    assert main(["quarantine", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
