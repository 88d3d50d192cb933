"""How the ``deid`` worker pool starts its processes: never forked from a threaded process."""

from __future__ import annotations

import threading
from pathlib import Path

from dicomveil.demo import write_demo_study
from dicomveil.pipeline import executor, run
from dicomveil.profile.policy import Policy

SECRET = b"pool-start-test-secret-0123456789"


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_threaded_parent_gets_workers_from_a_forkserver(tmp_path: Path) -> None:
    files = write_demo_study(tmp_path / "in", patients=2, series_per_study=1, images_per_series=3)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)  # a server's request thread, say
    other.start()
    try:
        assert executor._context(True).get_start_method() == "forkserver"
        summary = run.run_deidentification(files, tmp_path / "pooled", Policy(), SECRET, workers=2)
    finally:
        stop.set()
        other.join()
    assert summary.ok == len(files)
    run.run_deidentification(files, tmp_path / "alone", Policy(), SECRET, workers=1)
    assert _tree(tmp_path / "pooled") == _tree(tmp_path / "alone")
