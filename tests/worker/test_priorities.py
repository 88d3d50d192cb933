"""Queues (issue #15): STAT before ROUTINE on one worker; large instances on their own queue."""

from __future__ import annotations

import hashlib
import re
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
