"""`dicomveil deid` end to end: outputs, reports, exit codes, determinism, quarantine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from dicomveil.cli.main import main
from dicomveil.demo import demo_patients

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def outputs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.dcm"))}


def all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


class TestDeid:
    def test_folder_to_folder(self, demo_study: Path, tmp_path: Path, key_file: Path) -> None:
        dest = tmp_path / "out"
        assert main(["deid", str(demo_study), str(dest), "--key-file", str(key_file)]) == 0
        files = outputs(dest)
        assert len(files) == 18
        # laid out by pseudonyms: PATIENT/STUDY/SERIES/INSTANCE.dcm
        for key in files:
            patient, study, series, instance = key.split("/")
            assert patient.startswith("P") and study.startswith("S")
            assert series.startswith("2.25.") and instance.startswith("2.25.")
        # nothing of the fake patients survives, not even in the report or file names
        data = all_bytes(dest) + "\n".join(files).encode()
        for patient in demo_patients(3):
            for value in (patient.patient_id, patient.name.split("^")[0], patient.birth_date):
                assert value.encode() not in data
        report = json.loads((dest / "dicomveil-report.json").read_text())
        assert report["files"] == {"total": 18, "ok": 18, "failed": 0, "skipped": 0}
        assert report["ps315_edition"] == "2025b"

    def test_pixels_and_transfer_syntax_unchanged(
        self, demo_study: Path, tmp_path: Path, key_file: Path
    ) -> None:
        dest = tmp_path / "out"
        main(["deid", str(demo_study), str(dest), "--key-file", str(key_file), "-j", "1"])
        originals = {pydicom.dcmread(p).PixelData for p in demo_study.rglob("*.dcm")}
        for path in dest.rglob("*.dcm"):
            ds = pydicom.dcmread(path)
            assert ds.PixelData in originals
            assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID

    def test_same_output_whatever_the_worker_count(
        self, demo_study: Path, tmp_path: Path, key_file: Path
    ) -> None:
        one, two = tmp_path / "one", tmp_path / "two"
        assert (
            main(["deid", str(demo_study), str(one), "--key-file", str(key_file), "-j", "1"]) == 0
        )
        assert (
            main(["deid", str(demo_study), str(two), "--key-file", str(key_file), "-j", "2"]) == 0
        )
        assert outputs(one) == outputs(two)  # byte-identical

    def test_other_key_other_pseudonyms(
        self, demo_study: Path, tmp_path: Path, key_file: Path
    ) -> None:
        other = tmp_path / "other.key"
        other.write_text("a-completely-different-key-987654321\n")
        a, b = tmp_path / "a", tmp_path / "b"
        main(["deid", str(demo_study), str(a), "--key-file", str(key_file)])
        main(["deid", str(demo_study), str(b), "--key-file", str(other)])
        assert not set(outputs(a)) & set(outputs(b))

    def test_key_from_environment_equals_key_file(
        self, demo_study: Path, tmp_path: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        a, b = tmp_path / "a", tmp_path / "b"
        main(["deid", str(demo_study), str(a), "--key-file", str(key_file)])
        monkeypatch.setenv("DICOMVEIL_KEY", key_file.read_text().strip())
        main(["deid", str(demo_study), str(b)])
        assert outputs(a) == outputs(b)

    def test_default_key_created_in_state_folder(
        self, demo_study: Path, tmp_path: Path, state_home: Path
    ) -> None:
        assert main(["deid", str(demo_study), str(tmp_path / "out")]) == 0
        key = state_home / "keys" / "pseudonym.key"
        assert key.exists() and oct(key.stat().st_mode & 0o777) == "0o600"


class TestFailures:
    def test_bad_files_are_quarantined_and_the_rest_goes_on(
        self, demo_study: Path, tmp_path: Path, key_file: Path, state_home: Path
    ) -> None:
        good = next(demo_study.rglob("*.dcm"))
        (demo_study / "DOE_JOHN_cut.dcm").write_bytes(good.read_bytes()[:300])
        (demo_study / "empty.dcm").write_bytes(b"")
        (demo_study / "notes.txt").write_text("not dicom at all")
        dest, quarantine = tmp_path / "out", tmp_path / "q"
        code = main(
            ["deid", str(demo_study), str(dest), "--key-file", str(key_file),
             "--quarantine", str(quarantine)]
        )  # fmt: skip
        assert code == 1
        assert len(outputs(dest)) == 18
        reasons = json.loads((quarantine / "reasons.json").read_text())
        assert len(reasons) == 3
        report = json.loads((dest / "dicomveil-report.json").read_text())
        assert report["files"]["failed"] == 3
        assert "DOE_JOHN" not in json.dumps(report)  # no file names in DEST

    def test_usage_errors(self, tmp_path: Path) -> None:
        assert main(["deid", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
        assert main(["deid", str(tmp_path), str(tmp_path / "out"), "-o", "retain-all"]) == 2
        assert main(["deid"]) == 2

    def test_dest_inside_source_is_refused(self, demo_study: Path) -> None:
        assert main(["deid", str(demo_study), str(demo_study / "out")]) == 2


def test_json_summary_and_console_script(demo_study: Path, tmp_path: Path, key_file: Path) -> None:
    exe = shutil.which("dicomveil", path=os.path.dirname(sys.executable))
    assert exe is not None
    result = subprocess.run(
        [exe, "deid", str(demo_study), str(tmp_path / "out"), "--key-file", str(key_file),
         "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["files"]["ok"] == 18
    assert summary["key_id"] and "test-pseudonym" not in result.stdout + result.stderr
    module = subprocess.run(
        [sys.executable, "-m", "dicomveil", "--version"], capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert module.returncode == 0 and module.stdout.startswith("dicomveil ")


def test_verify_passes_then_catches_a_planted_leak(
    demo_study: Path, tmp_path: Path, key_file: Path
) -> None:
    dest = tmp_path / "out"
    main(["deid", str(demo_study), str(dest), "--key-file", str(key_file)])
    assert main(["verify", str(demo_study), str(dest)]) == 0
    # plant the first patient's ID into one output's free text
    victim = next(dest.rglob("*.dcm"))
    ds = pydicom.dcmread(victim)
    ds.ImageComments = "see " + demo_patients(3)[0].patient_id
    ds.save_as(victim)
    assert main(["verify", str(demo_study), str(dest)]) == 1


def test_profile_show_lists_every_row(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "show", "--json", "-o", "retain-uids"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) > 600
    sop = next(r for r in lines if r["keyword"] == "SOPInstanceUID")
    assert sop["effective"] == "K" and sop["operation"] == "keep"


def test_keys_init_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "keys"
    assert main(["keys", "init", "--dir", str(folder)]) == 0
    for name in ("pseudonym", "vault", "audit"):
        assert oct((folder / f"{name}.key").stat().st_mode & 0o777) == "0o600"
    assert main(["keys", "init", "--dir", str(folder)]) == 2  # no silent overwrite


def test_no_value_reaches_the_terminal(tmp_path: Path, key_file: Path) -> None:
    """pydicom's validation warnings quote values; the command line must silence them."""
    source = Path(pydicom.data.__file__).parent / "test_files" / "badVR.dcm"
    exe = shutil.which("dicomveil", path=os.path.dirname(sys.executable))
    assert exe is not None
    result = subprocess.run(
        [exe, "deid", str(source), str(tmp_path / "out"), "--key-file", str(key_file), "-j", "1"],
        capture_output=True, text=True, check=False,
        env={**os.environ, "DICOMVEIL_HOME": str(tmp_path / "h")},
    )  # fmt: skip
    assert "1.2.123.456.78.9.0123.4567.89012345678901" not in result.stdout + result.stderr
