"""After ``kill -9`` of ``dicomveil deid``, its worker processes end too (issue 11, item 19).

Before the fix, workers forked by the killed parent kept running and kept its pipes open: the
caller waited forever for the end of ``deid``'s output.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from dicomveil.pipeline.orphans import die_with_parent

RUN = "import sys; from dicomveil.cli.main import main; sys.exit(main(sys.argv[1:]))"


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended


def _drain(stream: object, done: threading.Event) -> None:
    assert hasattr(stream, "read")
    while stream.read(65536):
        pass
    done.set()


def test_workers_die_with_a_killed_deid(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    first = Path(shutil.copy(get_testdata_file("CT_small.dcm"), source / "f00000.dcm"))
    for number in range(1, 6000):  # long enough to be killed mid-run
        os.link(first, source / f"f{number:05d}.dcm")
    key = tmp_path / "key"
    key.write_text("orphan-test-key-0123456789abcdef\n")
    env = {**os.environ, "DICOMVEIL_HOME": str(tmp_path / "home")}
    argv = ["deid", str(source), str(tmp_path / "out"), "--key-file", str(key), "-j", "2"]
    process = subprocess.Popen(
        [sys.executable, "-c", RUN, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while len(workers := _children(process.pid)) < 2:
            assert process.poll() is None, "deid ended before its workers were seen"
            assert time.monotonic() < deadline, "no worker processes appeared"
            time.sleep(0.05)
        time.sleep(0.3)  # busy de-identifying
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        ends = [threading.Event(), threading.Event()]
        for stream, done in zip((process.stdout, process.stderr), ends, strict=True):
            threading.Thread(target=_drain, args=(stream, done), daemon=True).start()
        for done in ends:
            assert done.wait(5), "the caller's pipe is still held open after kill -9"
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in workers)
    finally:  # (before the fix) end the orphans, so that the pipes reach their end
        for pid in workers + _children(process.pid):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
        if process.stderr is not None:
            process.stderr.close()


def test_a_worker_whose_parent_is_gone_ends_itself() -> None:
    """The fallback without ``prctl``: a process whose recorded parent has ended exits."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        os.close(read)
        die_with_parent(2**22 + 12345)  # no such process: it ends at once
        os.write(write, b"survived")
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(child, 0)
    assert os.read(read, 100) == b""
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 1


def test_a_file_that_kills_its_worker_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed on one file (as the out-of-memory killer would) breaks the pool: the
    run goes on in a new one, and only that file fails (``WorkerCrash``)."""
    from dicomveil.demo import write_demo_study
    from dicomveil.pipeline import executor, files, run
    from dicomveil.profile.policy import Policy

    inputs = write_demo_study(tmp_path / "in", patients=2, series_per_study=2, images_per_series=5)
    killer = tmp_path / "in" / "kill.dcm"
    shutil.copy(get_testdata_file("CT_small.dcm"), killer)
    real = files.deidentify_file

    def deidentify_or_die(source: Path, *args: object, **kwargs: object) -> object:
        if source.name == "kill.dcm":
            os.kill(os.getpid(), signal.SIGKILL)
        return real(source, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(files, "deidentify_file", deidentify_or_die)  # inherited by forks
    # forked workers even when an earlier test left a thread running (the run would pick a
    # forkserver, whose workers do not inherit the patch)
    monkeypatch.setattr(executor, "_context", lambda _fork: multiprocessing.get_context("fork"))
    paths = sorted([*inputs, killer])
    summary = run.run_deidentification(paths, tmp_path / "out", Policy(), b"k" * 32, workers=2)
    assert summary.total == len(paths) and summary.ok == len(inputs)
    [failure] = summary.failures
    assert failure.source == killer and failure.error_kind == "WorkerCrash"
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == len(inputs)
