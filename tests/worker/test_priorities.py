"""Queues (issue #15): STAT before ROUTINE on one worker; large instances on their own queue."""

from __future__ import annotations

import hashlib
import os
import re
import signal
from pathlib import Path

import pytest

from dicomveil.cluster.queues import Priority
from dicomveil.cluster.submit import Queue
from dicomveil.pipeline.ingest import Origin
from tests.worker.conftest import Cluster
from tests.worker.test_cluster import _done, _index_count, _instances, _large_instance

ORIGIN = Origin(entry="stow", actor="token:queues")


def _tail(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[-12:]


def _started(log: Path) -> list[str]:
    return re.findall(r"task (\w{12})\.dcm started", log.read_text(errors="replace"))


@pytest.mark.slow
def test_a_stat_study_overtakes_a_routine_backlog(
    cluster: Cluster, queue: Queue, tmp_path: Path
) -> None:
    routine = _instances(tmp_path / "routine", 12)
    stat = _instances(tmp_path / "stat", 6, studies=1)
    cluster.submitter(queue).ingest(routine, ORIGIN)
    urgent = cluster.submitter(queue)
    urgent.priority = Priority.STAT
    urgent.ingest(stat, ORIGIN)  # queued last
    cluster.start_worker("a")
    cluster.wait(lambda: _done(cluster, 18))
    order = _started(cluster.root / "a.log")
    assert len(order) == 18
    first = order[:7]  # one routine message may be in hand already (prefetch 1)
    assert {_tail(p) for p in stat} <= set(first), order


@pytest.mark.slow
def test_a_large_instance_waits_for_a_large_worker_and_blocks_no_one(
    cluster: Cluster, queue: Queue, tmp_path: Path
) -> None:
    cluster.config.write_text(
        cluster.config.read_text() + "large_bytes = 4194304\n", encoding="utf-8"
    )  # 4 MB is "large" here; the sender reads the same file
    from dicomveil.cluster.settings import ClusterSettings

    sender = Queue(ClusterSettings.load(cluster.config, environ=cluster.env))
    try:
        large = _large_instance(tmp_path / "large", 8)
        small = _instances(tmp_path / "small", 4)
        cluster.submitter(sender).ingest([large, *small], ORIGIN)
    finally:
        sender.close()
    cluster.start_worker("a", "--queues", "stat,urgent,routine")
    cluster.wait(lambda: _index_count(cluster) == 4)
    assert _tail(large) not in _started(cluster.root / "a.log")
    cluster.start_worker("big", "--queues", "large")
    cluster.wait(lambda: _done(cluster, 5))
    assert _started(cluster.root / "big.log") == [_tail(large)]


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(part) for part in text.split()]


@pytest.mark.slow
def test_one_worker_runs_the_large_queue_in_a_process_of_its_own_so_stat_is_not_blocked(
    cluster: Cluster, queue: Queue, tmp_path: Path
) -> None:
    """`dicomveil worker` with the default queues and one task slot: a large instance in
    flight (its process frozen with SIGSTOP, so "in flight" lasts as long as the test
    needs) does not hold up a STAT study that arrives after it."""
    cluster.config.write_text(
        cluster.config.read_text() + "large_bytes = 4194304\n", encoding="utf-8"
    )
    from dicomveil.cluster.settings import ClusterSettings

    sender = Queue(ClusterSettings.load(cluster.config, environ=cluster.env))
    try:
        large = _large_instance(tmp_path / "large", 32)
        cluster.submitter(sender).ingest([large], ORIGIN)
        worker = cluster.start_worker("a")  # default queues, --concurrency 1
        log = cluster.root / "a.log"
        cluster.wait(lambda: f"{_tail(large)}.dcm started".encode() in log.read_bytes(), poll=0.01)
        (child,) = _children(worker.pid)
        os.kill(child, signal.SIGSTOP)
        try:
            assert f"{_tail(large)}.dcm in ".encode() not in log.read_bytes()
            stat = _instances(tmp_path / "stat", 4, studies=1)
            urgent = cluster.submitter(sender)
            urgent.priority = Priority.STAT
            urgent.ingest(stat, ORIGIN)
            cluster.wait(lambda: _index_count(cluster) == 4, timeout=60)
            assert f"{_tail(large)}.dcm in ".encode() not in log.read_bytes()  # still frozen
        finally:
            os.kill(child, signal.SIGCONT)
        cluster.wait(lambda: _done(cluster, 5))
    finally:
        sender.close()


def test_the_large_queue_gets_its_own_process_only_beside_other_queues() -> None:
    from dicomveil.cluster.queues import ALL_QUEUES, LARGE_QUEUE, PRIORITY_QUEUES
    from dicomveil.worker.large import split_large

    assert split_large(ALL_QUEUES, 1) == (PRIORITY_QUEUES, True)
    assert split_large(ALL_QUEUES, 0) == (ALL_QUEUES, False)
    assert split_large((LARGE_QUEUE,), 2) == ((LARGE_QUEUE,), False)
    assert split_large(PRIORITY_QUEUES, 1) == (PRIORITY_QUEUES, False)
