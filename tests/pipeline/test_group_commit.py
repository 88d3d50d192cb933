"""Group commit (:mod:`dicomveil.pipeline.group_commit`): callers running at once (a
worker's tasks, C-STOREs on several associations) share ingest calls, each still gets its own
result or the call's error, origins are never mixed, and none is stranded.

The ingest call here is a stand-in that records what it was given (the contract is the
call's signature); the real call is exercised end to end by tests/worker/test_cluster.py with
``--concurrency`` workers and by tests/dimse/ with several associations.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dicomveil.pipeline.group_commit import GroupCommit
from dicomveil.pipeline.ingest import IngestResult, Origin

STOW = Origin(entry="stow", actor="token:a")
DIMSE = Origin(entry="dimse", actor="ae:MODALITY", calling_ae="MODALITY")


class SlowCall:
    """Records every call's files and origin; takes ``seconds``; fails on ``poison``."""

    def __init__(self, seconds: float = 0.05, poison: str | None = None) -> None:
        self.seconds, self.poison = seconds, poison
        self.calls: list[tuple[list[str], Origin]] = []
        self.at_once = 0
        self._running = 0
        self._lock = threading.Lock()

    def __call__(self, files: Sequence[Path], origin: Origin) -> list[IngestResult]:
        with self._lock:
            self.calls.append(([f.name for f in files], origin))
            self._running += 1
            self.at_once = max(self.at_once, self._running)
        try:
            time.sleep(self.seconds)
            if self.poison is not None and any(f.name == self.poison for f in files):
                raise ConnectionError("the database went away")
            return [IngestResult(f, 0, None, None, f.name, None, None) for f in files]
        finally:
            with self._lock:
                self._running -= 1


def _run(batcher: GroupCommit, call: SlowCall, jobs: list[tuple[str, Origin]]) -> list[object]:
    """Each job in a thread of its own, all at once; each thread's result or error."""

    def one(job: tuple[str, Origin]) -> object:
        try:
            return batcher.ingest(call, Path(job[0]), job[1])
        except ConnectionError as exc:
            return exc

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(one, jobs, timeout=30))


def test_tasks_arriving_during_a_call_share_the_next_and_each_gets_its_own_result() -> None:
    batcher, call = GroupCommit(), SlowCall()
    names = [f"i{n}.dcm" for n in range(12)]
    results = _run(batcher, call, [(name, STOW) for name in names])
    assert [r.sop_instance_uid for r in results if isinstance(r, IngestResult)] == names
    assert sorted(n for files, _ in call.calls for n in files) == sorted(names)  # each once
    assert len(call.calls) < len(names) / 2  # shared calls, not one per task
    assert call.at_once == 1  # one call at a time per worker: the next batch queues up
    assert batcher.calls == len(call.calls)


def test_one_task_alone_runs_at_once_alone() -> None:
    batcher, call = GroupCommit(), SlowCall(seconds=0)
    result = batcher.ingest(call, Path("only.dcm"), STOW)
    assert result.sop_instance_uid == "only.dcm"
    assert call.calls == [(["only.dcm"], STOW)]


def test_a_failed_call_fails_every_task_it_carried_and_the_next_calls_still_run() -> None:
    batcher, call = GroupCommit(), SlowCall(poison="i3.dcm")
    results = _run(batcher, call, [(f"i{n}.dcm", STOW) for n in range(10)])
    failed = {files_i for files, _ in call.calls if "i3.dcm" in files for files_i in files}
    for n, result in enumerate(results):
        if f"i{n}.dcm" in failed:
            assert isinstance(result, ConnectionError)  # retried by its own task
        else:
            assert isinstance(result, IngestResult)
    assert len(failed) < 10  # the others went in other calls, which succeeded
    assert batcher.ingest(SlowCall(0), Path("after.dcm"), STOW).sop_instance_uid == "after.dcm"


def test_origins_never_share_a_call_and_the_limit_holds() -> None:
    batcher, call = GroupCommit(limit=3), SlowCall()
    jobs = [(f"i{n}.dcm", STOW if n % 2 else DIMSE) for n in range(14)]
    results = _run(batcher, call, jobs)
    assert all(isinstance(r, IngestResult) for r in results)
    for files, origin in call.calls:
        assert len(files) <= 3
        assert all((int(name[1:-4]) % 2 == 1) == (origin == STOW) for name in files)


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        GroupCommit(limit=0)


class Held:
    """A call that records its files and origin and holds the first call until released."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], Origin]] = []
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, files: Sequence[Path], origin: Origin) -> list[IngestResult]:
        self.calls.append(([f.name for f in files], origin))
        self.started.set()
        self.release.wait(10)
        return [IngestResult(f, 0, None, None, f.name, None, None) for f in files]


def test_callers_waiting_behind_a_call_share_the_next_one() -> None:
    batcher, call = GroupCommit(), Held()
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(batcher.ingest, call, Path("a0"), DIMSE)
        assert call.started.wait(10)  # the first call runs; the others queue behind it
        rest = [pool.submit(batcher.ingest, call, Path(f"a{i}"), DIMSE) for i in range(1, 6)]
        other = pool.submit(batcher.ingest, call, Path("b0"), STOW)
        time.sleep(0.2)  # let the six reach the queue
        call.release.set()
        results = [f.result(10).sop_instance_uid for f in [first, *rest, other]]
    assert results == [f"a{i}" for i in range(6)] + ["b0"]
    assert call.calls[0] == (["a0"], DIMSE)
    assert call.calls[1] == ([f"a{i}" for i in range(1, 6)], DIMSE)  # one call for five
    assert call.calls[2] == (["b0"], STOW)  # origins are never mixed


def test_close_waits_for_the_call_in_progress_then_refuses() -> None:
    batcher, call = GroupCommit(), Held()
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(batcher.ingest, call, Path("a0"), DIMSE)
        assert call.started.wait(10)
        closing = pool.submit(batcher.close)
        time.sleep(0.2)
        assert not closing.done()  # the node does not stop under a C-STORE being recorded
        call.release.set()
        closing.result(10)
        assert running.result(10).sop_instance_uid == "a0"
    with pytest.raises(RuntimeError, match="stopping"):
        batcher.ingest(call, Path("late"), DIMSE)
