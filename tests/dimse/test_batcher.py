"""Group commit: concurrent C-STOREs share ingest calls, each keeps its own result."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dicomveil.dimse.batcher import IngestBatcher


class Recorder:
    """An ingest function that records its calls and holds the first one until released."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, files: Sequence[Path], origin: str) -> list[str]:
        self.calls.append(([p.name for p in files], origin))
        self.started.set()
        self.release.wait(10)
        if any(p.name == "bad" for p in files):
            raise OSError("disk full")
        return [f"ok:{p.name}" for p in files]


def test_waiting_instances_share_the_next_call() -> None:
    ingest = Recorder()
    batcher = IngestBatcher(ingest)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(batcher.submit, Path("a0"), "ae:A")
        assert ingest.started.wait(10)  # the first call runs; the others queue behind it
        rest = [pool.submit(batcher.submit, Path(f"a{i}"), "ae:A") for i in range(1, 6)]
        other = pool.submit(batcher.submit, Path("b0"), "ae:B")
        time.sleep(0.2)  # let the six reach the queue
        ingest.release.set()
        results = [first.result(10)] + [f.result(10) for f in rest] + [other.result(10)]
    batcher.stop()
    assert results == [f"ok:a{i}" for i in range(6)] + ["ok:b0"]
    assert ingest.calls[0] == (["a0"], "ae:A")
    assert ingest.calls[1] == ([f"a{i}" for i in range(1, 6)], "ae:A")  # one call for five
    assert ingest.calls[2] == (["b0"], "ae:B")  # origins are never mixed


def test_a_failed_call_fails_its_instances_only() -> None:
    ingest = Recorder()
    ingest.release.set()
    batcher = IngestBatcher(ingest)
    with pytest.raises(OSError, match="disk full"):
        batcher.submit(Path("bad"), "ae:A")
    assert batcher.submit(Path("good"), "ae:A") == "ok:good"
    batcher.stop()
    with pytest.raises(RuntimeError, match="stopping"):
        batcher.submit(Path("late"), "ae:A")
