"""The ingest service's worker processes: same results (and archive) as in the caller's own
thread, uploads read from the server's memory, recovery when a worker dies."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from dicomveil.demo import write_demo_study
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.rules import compile_policy
from dicomveil.pipeline import executor as executor_module
from dicomveil.pipeline import ingest_pool
from dicomveil.pipeline.executor import Executor, WorkerSetup, WorkerState
from dicomveil.pipeline.failures import FailureKind
from dicomveil.pipeline.ingest_pool import IngestPool
from dicomveil.pipeline.ingest_work import Ingested, Upload, ingest_chunk
from dicomveil.profile.options import Option
from dicomveil.profile.policy import Policy
from dicomveil.storage import open_store
from dicomveil.web.spool import Spool
from tests.web.support import TEST_KEY

SECRET = TEST_KEY.encode()


def _pool(processes: int, archive: Path) -> IngestPool:
    policy = Policy()
    url = f"file://{archive}"
    options = {"sidecars": False}
    store = open_store(url, **options)
    local = WorkerState(PseudonymKeys(SECRET), compile_policy(policy), store)
    setup = WorkerSetup(SECRET, policy, url, options)
    return IngestPool(Executor.open(setup, processes, local=local), workers_store=True)


def _summary(results: list[Ingested], archive: Path) -> list[tuple[str, str, str, bytes]]:
    rows = []
    for result in results:
        assert result.ok and result.staged is None and result.record is not None
        data = (archive / result.record.storage_key).read_bytes()
        assert hashlib.sha256(data).hexdigest() == result.record.sha256
        rows.append((str(result.outcome.source), result.outcome.output, result.sop_class_uid, data))
    return rows


@pytest.fixture
def uploads(tmp_path: Path) -> list[Path]:
    return write_demo_study(
        tmp_path / "in", patients=2, series_per_study=1, images_per_series=5, seed=3
    )


def test_workers_give_what_the_server_thread_gives(tmp_path: Path, uploads: list[Path]) -> None:
    answers = []
    for processes in (1, 2):
        out, archive = tmp_path / f"out-{processes}", tmp_path / f"archive-{processes}"
        work = [Upload(str(p), n, str(out), True) for n, p in enumerate(uploads, start=1)]
        pool = _pool(processes, archive)
        try:
            answers.append(_summary(pool.run(work), archive))
        finally:
            pool.close()
    in_thread, in_workers = answers
    assert in_workers == in_thread  # same order, names, outputs and bytes
    assert [row[0] for row in in_workers] == [f"upload-{n}" for n in range(1, 11)]


def test_workers_read_uploads_spooled_in_the_servers_memory(
    tmp_path: Path, uploads: list[Path]
) -> None:
    pool = _pool(2, tmp_path / "archive")
    spool = Spool(tmp_path / "spill")
    try:
        assert pool.shares_memory
        parts = []
        for number, source in enumerate(uploads[:4], start=1):
            part = spool.create(f"part-{number}")
            part.write(source.read_bytes())
            part.finish()
            assert part.in_memory and str(part.path).startswith(f"/proc/{os.getpid()}/fd/")
            parts.append(Upload(str(part.path), number, str(tmp_path / "out"), True))
        results = pool.run(parts)
        assert [r.ok for r in results] == [True] * 4
        assert not (tmp_path / "spill").exists()  # nothing of the uploads went to disk
    finally:
        spool.close()
        pool.close()


def test_a_dead_worker_costs_no_instance(tmp_path: Path, uploads: list[Path]) -> None:
    pool = _pool(2, tmp_path / "archive")
    try:
        out = str(tmp_path / "out")
        work = [Upload(str(p), n, out, True) for n, p in enumerate(uploads, start=1)]
        assert all(r.ok for r in pool.run(work[:2]))
        executor = pool.executor.pool
        assert executor is not None
        for pid in list(executor._processes):  # the workers die between two requests
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        results = pool.run(work)
        assert [r.ok for r in results] == [True] * len(work)
        assert pool.executor.pool is not executor  # started anew
        assert all(r.ok for r in pool.run(work[:3]))
    finally:
        pool.close()


def test_failures_come_back_without_paths(tmp_path: Path) -> None:
    bad = tmp_path / "secret-patient-name.dcm"
    bad.write_bytes(b"not dicom at all" * 10)
    pool = _pool(2, tmp_path / "archive")
    try:
        (result,) = pool.run([Upload(str(bad), 1, str(tmp_path / "out"), True)])
    finally:
        pool.close()
    assert not result.ok and result.record is None
    assert "secret-patient-name" not in result.outcome.reason
    assert str(result.outcome.source) == "upload-1"


def test_a_store_of_this_process_only_is_filled_here(tmp_path: Path, uploads: list[Path]) -> None:
    policy = Policy()
    store = open_store("memory://engine-pool-test")
    local = WorkerState(PseudonymKeys(SECRET), compile_policy(policy), store)
    executor = Executor.open(WorkerSetup(SECRET, policy), 2, local=local)
    pool = IngestPool(executor, workers_store=False)
    try:
        out = str(tmp_path / "out")
        results = pool.run([Upload(str(p), n, out, True) for n, p in enumerate(uploads, 1)])
    finally:
        pool.close()
    stored = {info.key for info in store.list()}
    assert stored == {r.record.storage_key for r in results if r.record is not None}
    assert len(stored) == len(uploads)


def test_without_processes_the_server_does_the_work(
    tmp_path: Path, uploads: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(_prefer_fork: bool) -> None:
        raise OSError("no semaphores here")

    monkeypatch.setattr(executor_module, "_context", refuse)
    pool = _pool(2, tmp_path / "archive")
    try:
        assert pool.processes == 1 and pool.shares_memory
        out = str(tmp_path / "out")
        results = pool.run([Upload(str(p), n, out, True) for n, p in enumerate(uploads, 1)])
        assert [r.ok for r in results] == [True] * len(uploads)
    finally:
        pool.close()


def _crash_on_second(state: WorkerState, uploads: list[Upload]) -> list[Ingested]:
    """``ingest_chunk``, but the process dies on upload 2 (run in the worker processes)."""
    if any(upload.number == 2 for upload in uploads):
        os._exit(70)
    return ingest_chunk(state, uploads)


def test_an_instance_that_kills_its_worker_fails_alone(
    tmp_path: Path, uploads: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_pool, "ingest_chunk", _crash_on_second)
    pool = _pool(2, tmp_path / "archive")
    try:
        out = str(tmp_path / "out")
        work = [Upload(str(p), n, out, True) for n, p in enumerate(uploads[:4], start=1)]
        results = pool.run(work)
        assert [r.ok for r in results] == [True, False, True, True]
        assert results[1].outcome.error_kind == FailureKind.WORKER_CRASH
        assert str(results[1].outcome.source) == "upload-2"
        assert all(r.ok for r in pool.run(work[2:]))  # the pool works on afterwards
    finally:
        pool.close()


def _counting(pool: IngestPool, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record every task handed to the executor (in-process or to a worker)."""
    handed: list[object] = []
    submit = pool.executor.submit

    def counted(task: Any, *args: Any) -> Any:
        handed.append(task)
        return submit(task, *args)

    monkeypatch.setattr(pool.executor, "submit", counted)
    return handed


def test_one_small_instance_is_worked_on_in_the_calling_thread(
    tmp_path: Path, uploads: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One association sends one instance at a time: no worker round trip for it, and the
    same archived bytes as a worker gives; several instances still go to the workers."""
    reference = _pool(1, tmp_path / "reference")
    try:
        expected = _summary(
            reference.run([Upload(str(uploads[0]), 1, str(tmp_path / "o1"), True)]),
            tmp_path / "reference",
        )
    finally:
        reference.close()
    pool = _pool(2, tmp_path / "archive")
    try:
        handed = _counting(pool, monkeypatch)
        one = pool.run([Upload(str(uploads[0]), 1, str(tmp_path / "o2"), True)])
        assert handed == []  # not a worker's task: run in this thread
        assert _summary(one, tmp_path / "archive") == expected
        two = [Upload(str(p), n, str(tmp_path / "o3"), True) for n, p in enumerate(uploads[1:3])]
        assert len(_summary(pool.run(two), tmp_path / "archive")) == 2
        assert handed  # several instances: the workers
    finally:
        pool.close()


def test_a_policy_that_decodes_pixels_keeps_single_instances_in_the_workers(
    tmp_path: Path, uploads: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pixel cleaning runs codecs and OCR (native code): never in the server's process."""
    policy = Policy(options=frozenset({Option.CLEAN_PIXEL_DATA}))
    url = f"file://{tmp_path / 'archive'}"
    store = open_store(url, sidecars=False)
    local = WorkerState(PseudonymKeys(SECRET), compile_policy(policy), store)
    setup = WorkerSetup(SECRET, policy, url, {"sidecars": False})
    pool = IngestPool(Executor.open(setup, 2, local=local), workers_store=True)
    try:
        assert not pool.inline
        handed = _counting(pool, monkeypatch)
        pool.run([Upload(str(uploads[0]), 1, str(tmp_path / "out"), True)])
        assert handed == [ingest_chunk]
    finally:
        pool.close()
