"""What ``deid`` meets in SOURCE and its environment: special files, hostile names, folders it
cannot write. Each ends with one clear line and the right exit code, never a hang or a
traceback, and nothing but regular files is ever read."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dicomveil.cli.main import main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SECRET = "planted-secret-key-0123456789abcdef"


def _bytes_under(*folders: Path) -> bytes:
    return b"".join(
        p.read_bytes() for f in folders if f.exists() for p in f.rglob("*") if p.is_file()
    )


def test_special_files_are_named_and_never_read(
    demo_study: Path, tmp_path: Path, state_home: Path
) -> None:
    """A FIFO hung the run forever; ``/dev/zero`` filled the quarantine (34 GB in a minute);
    ``/proc/self/environ`` copied the pseudonym key into it."""
    os.mkfifo(demo_study / "fifo.dcm")
    (demo_study / "zero.dcm").symlink_to("/dev/zero")
    (demo_study / "environ.dcm").symlink_to("/proc/self/environ")
    dest = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "dicomveil", "deid", str(demo_study), str(dest), "-j", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "DICOMVEIL_HOME": str(state_home), "DICOMVEIL_KEY": SECRET},
    )
    assert done.returncode == 1, done.stderr  # the run is complete, but paths were not read
    for name in ("fifo.dcm", "zero.dcm", "environ.dcm"):
        assert f"not read: {demo_study / name}: " in done.stderr
    assert "18 de-identified, 0 failed, 0 skipped, 3 not read of 21 file(s)" in done.stderr
    report = json.loads((dest / "dicomveil-report.json").read_text())
    assert report["not_read"]["count"] == 3
    assert "fifo" not in json.dumps(report)  # the report in DEST names no input path
    kept = _bytes_under(state_home / "quarantine", dest)
    assert SECRET.encode() not in kept
    assert len(kept) < 50_000_000
    (run,) = (state_home / "quarantine").iterdir()
    listed = json.loads((run / "reasons.json").read_text())
    assert sorted(Path(e["source"]).name for e in listed) == [
        "environ.dcm", "fifo.dcm", "zero.dcm",
    ]  # fmt: skip
    assert not any(e["file"] for e in listed)


class TestEnvironmentErrors:
    """Usage and environment errors: exit 2 with one line, before any work."""

    def _refused(self, argv: list[str], capsys: pytest.CaptureFixture[str], says: str) -> None:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err

    def test_dest_is_an_existing_file(
        self, demo_study: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        one = next(demo_study.rglob("*.dcm"))
        before = one.read_bytes()
        key = ["--key-file", str(key_file)]
        self._refused(["deid", str(one), str(one), *key], capsys, "is an existing file")
        self._refused(["deid", str(demo_study), str(key_file), *key], capsys, "existing file")
        assert one.read_bytes() == before

    def test_dest_below_a_file_or_not_creatable(
        self,
        demo_study: Path,
        tmp_path: Path,
        key_file: Path,
        capsys: pytest.CaptureFixture[str],
        state_home: Path,
    ) -> None:
        key = ["--key-file", str(key_file)]
        self._refused(["deid", str(demo_study), str(key_file / "out"), *key], capsys, "is a file")
        self._refused(
            ["deid", str(demo_study), "/proc/no/such/dest", *key], capsys, "cannot be created"
        )
        assert not (state_home / "quarantine").exists() or not any(
            (state_home / "quarantine").iterdir()
        )

    def test_state_folder_or_quarantine_not_creatable(
        self,
        demo_study: Path,
        tmp_path: Path,
        key_file: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        dest = tmp_path / "out"
        argv = ["deid", str(demo_study), str(dest), "--key-file", str(key_file)]
        self._refused([*argv, "--quarantine", str(key_file / "q")], capsys, "quarantine folder")
        assert not dest.exists()  # refused before any work
        monkeypatch.setenv("DICOMVEIL_HOME", str(key_file / "home"))
        self._refused(argv, capsys, "DICOMVEIL_HOME")
        assert not dest.exists()


def test_markup_and_control_characters_in_names(
    demo_study: Path, tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``q[/bold]x.dcm`` and a DEST holding ``[/red]`` raised MarkupError and killed the run;
    ESC and newline in names reached the terminal raw."""
    (demo_study / "q[").mkdir()
    (demo_study / "q[" / "bold]x.dcm").write_text("not dicom")
    (demo_study / "esc\x1b[2Jnl\nx.dcm").write_text("not dicom")
    dest = tmp_path / "out[/red]"
    code = main(["deid", str(demo_study), str(dest), "--key-file", str(key_file), "-j", "1"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"failed: {demo_study}/q[/bold]x.dcm: not DICOM" in err
    assert "esc\\x1b[2Jnl\\nx.dcm" in err and "\x1b" not in err
    assert f"-> {dest}" in err
    assert len(list(dest.rglob("*.dcm"))) == 18


class TestQuarantine:
    def _run(self, source: Path, dest: Path, key_file: Path, *extra: str) -> int:
        return main(["deid", str(source), str(dest), "--key-file", str(key_file), *extra])

    def _broken(self, demo_study: Path, name: str, cut: int = 300) -> Path:
        good = sorted(demo_study.glob("*/*/*.dcm"))[0]
        path = demo_study / name
        path.write_bytes(good.read_bytes()[:cut])
        return path

    def test_copies_named_by_hash_and_non_dicom_listed_only(
        self, demo_study: Path, tmp_path: Path, key_file: Path, state_home: Path
    ) -> None:
        """A name of 250 bytes was "copied to quarantine" but was not (ENAMETOOLONG)."""
        cut = self._broken(demo_study, "DOE_JOHN_" + "x" * 237 + ".dcm")
        (demo_study / "report.txt").write_text("DOE JOHN, born 1970")
        assert self._run(demo_study, tmp_path / "out", key_file) == 1
        (run,) = (state_home / "quarantine").iterdir()
        listed = {Path(e["source"]).name: e for e in json.loads((run / "reasons.json").read_text())}
        digest = hashlib.sha256(cut.read_bytes()).hexdigest()
        assert listed[cut.name]["file"] == f"{digest}.dcm"
        assert (run / f"{digest}.dcm").read_bytes() == cut.read_bytes()
        assert listed["report.txt"]["file"] == ""
        assert listed["report.txt"]["not_copied"] == "not DICOM (listed by hash only)"
        assert len(listed["report.txt"]["sha256"]) == 64
        assert b"DOE JOHN" not in _bytes_under(run)
        assert oct(run.stat().st_mode & 0o777) == "0o700"

    def test_quota(
        self, demo_study: Path, tmp_path: Path, key_file: Path, state_home: Path
    ) -> None:
        for n in range(3):
            self._broken(demo_study, f"cut{n}.dcm", 300 + n)
        assert self._run(demo_study, tmp_path / "a", key_file, "--quarantine-max-files", "2") == 1
        (run,) = (state_home / "quarantine").iterdir()
        assert len(list(run.glob("*.dcm"))) == 2
        reasons = [e.get("not_copied") for e in json.loads((run / "reasons.json").read_text())]
        assert reasons.count("quarantine quota reached") == 1
        report = json.loads((tmp_path / "a" / "dicomveil-report.json").read_text())
        assert report["quarantine"]["not_copied"] == {"quarantine quota reached": 1}
        # the quota counts the whole quarantine: a second run has room for nothing
        assert self._run(demo_study, tmp_path / "b", key_file, "--quarantine-max-files", "2") == 1
        assert sum(1 for _ in (state_home / "quarantine").rglob("*.dcm")) == 2
        env = {"DICOMVEIL_QUARANTINE_MAX_BYTES": "0"}
        os.environ.update(env)
        try:
            assert self._run(demo_study, tmp_path / "c", key_file) == 1
        finally:
            del os.environ["DICOMVEIL_QUARANTINE_MAX_BYTES"]
        assert sum(1 for _ in (state_home / "quarantine").rglob("*.dcm")) == 2

    def test_retention(
        self, demo_study: Path, tmp_path: Path, key_file: Path, state_home: Path
    ) -> None:
        self._broken(demo_study, "cut.dcm")
        assert self._run(demo_study, tmp_path / "a", key_file) == 1
        (old,) = (state_home / "quarantine").iterdir()
        other = state_home / "quarantine" / "not-a-run"
        other.mkdir()
        month_ago = os.stat(old / "reasons.json").st_mtime - 31 * 86400
        os.utime(old / "reasons.json", (month_ago, month_ago))
        os.utime(other, (month_ago, month_ago))
        assert self._run(demo_study, tmp_path / "b", key_file) == 1
        left = sorted(p.name for p in (state_home / "quarantine").iterdir())
        assert old.name not in left and "not-a-run" in left and len(left) == 2


def test_a_quarantine_that_cannot_be_written_keeps_the_report(
    demo_study: Path, tmp_path: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quarantine was made after every output, so its failure lost the report."""
    import dicomveil.cli.deid

    good = sorted(demo_study.glob("*/*/*.dcm"))[0]
    (demo_study / "cut.dcm").write_bytes(good.read_bytes()[:300])
    quarantine = tmp_path / "q"
    original = dicomveil.cli.deid.run_deidentification

    def then_block(*args: object, **kwargs: object) -> object:
        summary = original(*args, **kwargs)  # type: ignore[arg-type]
        quarantine.write_text("a file where the quarantine folder should go")
        return summary

    monkeypatch.setattr(dicomveil.cli.deid, "run_deidentification", then_block)
    dest = tmp_path / "out"
    argv = ["deid", str(demo_study), str(dest), "--key-file", str(key_file), "-j", "1"]
    assert main([*argv, "--quarantine", str(quarantine)]) == 1
    report = json.loads((dest / "dicomveil-report.json").read_text())
    assert report["files"]["ok"] == 18 and report["files"]["failed"] == 1
    assert report["quarantine"]["error"].startswith("the quarantine could not be written")


def test_skipped_files_are_named(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pydicom.data import get_testdata_file

    source = tmp_path / "media"
    source.mkdir()
    dicomdir = get_testdata_file("DICOMDIR")
    assert dicomdir is not None
    (source / "DICOMDIR").write_bytes(Path(dicomdir).read_bytes())
    dest = tmp_path / "out"
    argv = ["deid", str(source), str(dest), "--key-file", str(key_file), "-j", "1"]
    assert main([*argv, "--verbose"]) == 0
    assert f"skipped: {source / 'DICOMDIR'}: DICOMDIR" in capsys.readouterr().err
    report = json.loads((dest / "dicomveil-report.json").read_text())
    (skipped,) = report["skipped"]
    assert len(skipped["input_sha256"]) == 64 and "DICOMDIR" in skipped["reason"]
