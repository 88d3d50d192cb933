"""The gateway's de-identification processes: same results as in the server's own thread,
uploads read from the server's memory, recovery when a worker dies."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from dicomveil.demo import write_demo_study
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.rules import compile_policy
from dicomveil.profile.policy import Policy
from dicomveil.web.engine_pool import EnginePool
from dicomveil.web.ingest_work import Ingested, Upload
from dicomveil.web.spool import Spool
from tests.web.support import TEST_KEY

SECRET = TEST_KEY.encode()


def _pool(processes: int) -> EnginePool:
    policy = Policy()
    return EnginePool(SECRET, policy, PseudonymKeys(SECRET), compile_policy(policy), processes)


def _summary(results: list[Ingested], out: Path) -> list[tuple[str, str, str, bytes]]:
    rows = []
    for result in results:
        assert result.ok and result.staged is not None and result.record is not None
        data = result.staged.read_bytes()
        rows.append((str(result.outcome.source), result.outcome.output, result.sop_class_uid, data))
        assert result.staged.is_relative_to(out)
    return rows


@pytest.fixture
def uploads(tmp_path: Path) -> list[Path]:
    return write_demo_study(
        tmp_path / "in", patients=2, series_per_study=1, images_per_series=5, seed=3
    )


def test_workers_give_what_the_server_thread_gives(tmp_path: Path, uploads: list[Path]) -> None:
    answers = []
    for processes in (1, 2):
        out = tmp_path / f"out-{processes}"
        work = [Upload(str(p), n, str(out), True) for n, p in enumerate(uploads, start=1)]
        pool = _pool(processes)
        try:
            answers.append(_summary(pool.run(work), out))
        finally:
            pool.close()
    in_thread, in_workers = answers
    assert in_workers == in_thread  # same order, names, outputs and bytes
    assert [row[0] for row in in_workers] == [f"upload-{n}" for n in range(1, 11)]


def test_workers_read_uploads_spooled_in_the_servers_memory(
    tmp_path: Path, uploads: list[Path]
) -> None:
    pool = _pool(2)
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
    pool = _pool(2)
    try:
        out = str(tmp_path / "out")
        work = [Upload(str(p), n, out, True) for n, p in enumerate(uploads, start=1)]
        assert all(r.ok for r in pool.run(work[:2]))
        executor = pool._executor
        assert executor is not None
        for pid in list(executor._processes):  # the workers die between two requests
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        results = pool.run(work)
        assert [r.ok for r in results] == [True] * len(work)
        assert pool._executor is not executor  # started anew
        assert all(r.ok for r in pool.run(work[:3]))
    finally:
        pool.close()


def test_failures_come_back_without_paths(tmp_path: Path) -> None:
    bad = tmp_path / "secret-patient-name.dcm"
    bad.write_bytes(b"not dicom at all" * 10)
    pool = _pool(2)
    try:
        (result,) = pool.run([Upload(str(bad), 1, str(tmp_path / "out"), True)])
    finally:
        pool.close()
    assert not result.ok and result.record is None
    assert "secret-patient-name" not in result.outcome.reason
    assert str(result.outcome.source) == "upload-1"
