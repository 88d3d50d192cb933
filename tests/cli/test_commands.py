"""The command line a new user meets: progress, --dry-run, --verbose, keys, batch list,
reidentify's purpose, shell completion."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from rich.console import Console

import dicomveil.cli.deid
import dicomveil.cli.verify
from dicomveil.cli.main import main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _terminal(monkeypatch: pytest.MonkeyPatch, module: object) -> io.StringIO:
    """Make ``module``'s stderr console a terminal writing into the returned buffer."""
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120, highlight=False)
    monkeypatch.setattr(module, "err_console", console)
    return buffer


def test_progress_counts_files_per_second(
    demo_study: Path, tmp_path: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bar showed rich's byte rate (one 'byte' per file: "12 B/s"); files/s now."""
    shown = _terminal(monkeypatch, dicomveil.cli.deid)
    dest = tmp_path / "out"
    assert main(["deid", str(demo_study), str(dest), "--key-file", str(key_file), "-j", "1"]) == 0
    text = shown.getvalue()
    assert "de-identifying" in text and "files/s" in text
    assert "B/s" not in text
    # verify shows its progress too (it showed nothing for minutes on a large folder)
    shown = _terminal(monkeypatch, dicomveil.cli.verify)
    assert main(["verify", str(demo_study), str(dest)]) == 0
    text = shown.getvalue()
    assert "verifying" in text and "36/36" in text and "files/s" in text


def _flag_one(demo_study: Path) -> Path:
    """Make one input an ultrasound image without BurnedInAnnotation: flagged, not refused."""
    path = sorted(demo_study.glob("*/*/*.dcm"))[0]
    ds = pydicom.dcmread(path)
    ds.Modality = "US"
    if "BurnedInAnnotation" in ds:
        del ds.BurnedInAnnotation
    ds.save_as(path)
    return path


def test_verbose_names_flagged_files_and_the_report_lists_them(
    demo_study: Path, tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flagged = _flag_one(demo_study)
    dest = tmp_path / "out"
    argv = ["deid", str(demo_study), str(dest), "--key-file", str(key_file), "-j", "1"]
    assert main(argv) == 0
    assert str(flagged) not in capsys.readouterr().err  # named only with --verbose
    report = json.loads((dest / "dicomveil-report.json").read_text())
    (entry,) = report["flagged"]
    assert entry["flags"] == ["possible-burned-in-annotation"]
    assert (dest / entry["output"]).is_file()  # named by its pseudonymous output
    assert report["skipped"] == [] and report["not_read"] == {"count": 0, "reasons": {}}
    assert main([*argv[:2], str(tmp_path / "again"), *argv[3:], "--verbose"]) == 0
    err = capsys.readouterr().err
    assert f"flagged: {flagged} -> {entry['output']}: possible-burned-in-annotation" in err


def test_dry_run_writes_nothing(
    demo_study: Path,
    tmp_path: Path,
    key_file: Path,
    state_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = sorted(demo_study.glob("*/*/*.dcm"))[0]
    (demo_study / "cut.dcm").write_bytes(good.read_bytes()[:300])
    (demo_study / "notes.txt").write_text("not dicom")
    os.mkfifo(demo_study / "fifo")
    dest = tmp_path / "out"
    argv = ["deid", str(demo_study), str(dest), "--key-file", str(key_file), "--dry-run"]
    home_before = sorted(p.name for p in state_home.rglob("*")) if state_home.exists() else []
    assert main([*argv, "--json"]) == 1  # as the run would: two fail, one not read
    info = json.loads(capsys.readouterr().out)
    assert not dest.exists()
    home_after = sorted(p.name for p in state_home.rglob("*"))
    assert not {"vault.sqlite", "audit"} & set(home_after) or home_after == home_before
    assert not (state_home / "quarantine").exists() or not any(
        (state_home / "quarantine").iterdir()
    )
    assert info["files"] == {"total": 20, "ok": 18, "failed": 2, "skipped": 0, "not_read": 1}
    assert info["layout"]["patients"] == 3 and info["layout"]["instances"] == 18
    assert sorted(f["copied"] for f in info["would_quarantine"]) == [False, True]
    # the layout is the one a real run writes
    assert main(argv[:-1] + ["-j", "1"]) == 1
    written = sorted(str(p.relative_to(dest)) for p in dest.rglob("*.dcm"))
    assert written == info["layout"]["outputs"]
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "nothing was written" in err and "3 patient(s)" in err and "would fail:" in err


def test_dry_run_on_a_fresh_machine_creates_no_key_and_no_state_folder(
    demo_study: Path, tmp_path: Path, state_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not state_home.exists()
    dest = tmp_path / "out"
    assert main(["deid", str(demo_study), str(dest), "--dry-run", "--json"]) == 0
    captured = capsys.readouterr()
    assert not state_home.exists() and not dest.exists()  # no key, no folder, nothing
    assert "throwaway key" in captured.err
    info = json.loads(captured.out)
    assert info["files"]["ok"] == 18 and info["layout"]["patients"] == 3
    # with a key in place, the dry run uses it and still writes nothing new
    assert main(["keys", "init"]) == 0
    before = sorted(p.relative_to(state_home) for p in state_home.rglob("*"))
    capsys.readouterr()
    assert main(["deid", str(demo_study), str(dest), "--dry-run"]) == 0
    assert "throwaway" not in capsys.readouterr().err
    assert sorted(p.relative_to(state_home) for p in state_home.rglob("*")) == before


def test_keys_show_says_an_environment_key_is_invalid(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DICOMVEIL_KEY", "short")
    assert main(["keys", "show"]) == 1
    out = capsys.readouterr().out
    assert "pseudonym: INVALID, from environment DICOMVEIL_KEY: " in out
    assert "short" not in out.replace("too short", "")  # never the secret
    monkeypatch.setenv("DICOMVEIL_KEY", "a-valid-key-0123456789abcdef")
    assert main(["keys", "show"]) == 0


def test_batch_list_prints_whole_ids(
    demo_study: Path, tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "a-long-destination-folder-name" / "that-takes-room"
    argv = ["batch", str(demo_study), "--dest", str(dest), "--key-file", str(key_file)]
    assert main([*argv, "-j", "1", "--json", "--org", "HOSPITAL-ORG"]) == 0
    batch_id = json.loads(capsys.readouterr().out)["batch_id"]
    assert main(["batch", "list"]) == 0  # 80 columns when not a terminal
    assert batch_id in capsys.readouterr().out


def test_shell_completion() -> None:
    env = {**os.environ, "_DICOMVEIL_COMPLETE": "complete_bash", "COMP_CWORD": "1"}
    probe = "from dicomveil.cli.main import run; run()"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={**env, "COMP_WORDS": "dicomveil qu"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.split() == ["quarantine"], done.stderr
    assert main(["--show-completion", "bash"]) == 0


def test_a_stopped_batch_records_why(
    demo_study: Path,
    tmp_path: Path,
    key_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch stopped by Ctrl-C (or an unexpected error) said nothing of why."""
    import dicomveil.cli.batch
    from dicomveil.cli.batch_progress import RichBatchEvents

    class Interrupted(RichBatchEvents):
        def phase_done(self, name: str) -> None:
            raise KeyboardInterrupt

    monkeypatch.setattr(dicomveil.cli.batch, "RichBatchEvents", Interrupted)
    argv = ["batch", str(demo_study), "--dest", str(tmp_path / "d"), "--key-file", str(key_file)]
    assert main([*argv, "-j", "1"]) == 130
    batch_id = capsys.readouterr().err.split("batch resume ")[1].split()[0]
    assert main(["batch", "status", batch_id, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == "stopped"
    assert status["error"] == "stopped: interrupted (Ctrl-C or SIGINT); resume it"
    monkeypatch.setattr(dicomveil.cli.batch, "RichBatchEvents", RichBatchEvents)
    assert main(["batch", "resume", batch_id, "--key-file", str(key_file), "-j", "1"]) == 0


def test_batch_names_special_files_and_does_not_hang(
    demo_study: Path, tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A FIFO in SOURCE hung a batch as it hung deid."""
    os.mkfifo(demo_study / "fifo.dcm")
    (demo_study / "environ.dcm").symlink_to("/proc/self/environ")
    argv = ["batch", str(demo_study), "--dest", str(tmp_path / "d"), "--key-file", str(key_file)]
    assert main([*argv, "-j", "1"]) == 0
    err = capsys.readouterr().err
    assert f"not read: {demo_study / 'fifo.dcm'}: a FIFO" in err
    assert f"not read: {demo_study / 'environ.dcm'}: symbolic link leading outside" in err


def test_one_helper_shows_any_name() -> None:
    from dicomveil.cli.common import show, visible

    assert visible("plain name.dcm") == "plain name.dcm"
    assert visible("a\x1b[2Jb\nc\td") == "a\\x1b[2Jb\\nc\\td"
    assert visible(os.fsdecode(b"caf\xe9.dcm")) == "caf\\xe9.dcm"  # not UTF-8: byte shown
    assert visible("evil\u202egpj.exe") == "evil\\u202egpj.exe"  # bidirectional override
    assert visible("Müller Ærø") == "Müller Ærø"
    assert show("q[/bold]x") == "q\\[/bold]x"
    buffer = io.StringIO()
    name = os.fsdecode(b"[/red]\xff")
    Console(file=buffer, width=200).print(f"failed: {show(name)}")
    assert buffer.getvalue() == "failed: [/red]\\xff\n"
