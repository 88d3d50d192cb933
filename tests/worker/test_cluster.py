"""Cluster mode end to end (issue #15): real Redis, real Celery workers, PostgreSQL.

Every accepted instance must end de-identified exactly once in the archive, the vault and
the index, whatever happens to the workers (SIGKILL mid-task) or the broker (restart), and
no value of an instance may reach the broker, the logs or a dead letter.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from dicomveil.cluster.submit import Queue
from dicomveil.index import open_index
from dicomveil.pipeline.ingest import Origin
from dicomveil.pipeline.quarantine import REASONS_NAME, run_organisation
from dicomveil.storage import open_store
from tests.conftest import create_postgres_database
from tests.worker.conftest import Cluster, PostgresServer, RedisServer

CANARY = "ZZCANARYPATIENT"
CANARY_ID = "CANARYID7731"
ORIGIN = Origin(entry="stow", actor="token:cluster-test")


def _instances(folder: Path, count: int, studies: int = 2) -> list[Path]:
    """``count`` CT instances with planted PHI (patient name and id), in ``studies`` studies."""
    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    study_uids = [generate_uid(prefix=None) for _ in range(studies)]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        source.PatientName = f"{CANARY}^N{number}"
        source.PatientID = CANARY_ID
        source.StudyInstanceUID = study_uids[number % studies]
        source.SeriesInstanceUID = study_uids[number % studies] + ".1"
        source.SOPInstanceUID = generate_uid(prefix=None)
        source.file_meta.MediaStorageSOPInstanceUID = source.SOPInstanceUID
        path = folder / f"{CANARY}-{number}.dcm"
        source.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _large_instance(folder: Path, megabytes: int) -> Path:
    """One CT instance of about ``megabytes`` MB (a task that takes a while), planted PHI."""
    import numpy as np

    (path,) = _instances(folder, 1, studies=1)
    ds = pydicom.dcmread(path)
    side = int((megabytes * 1024 * 1024 / 2) ** 0.5)
    ds.Rows = ds.Columns = side
    ds.PixelData = np.zeros((side, side), dtype=np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _archived(cluster: Cluster) -> list[Path]:
    root = cluster.root / "archive"
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]


def _incoming_left(cluster: Cluster) -> int:
    return sum(1 for _ in open_store(cluster.incoming_url).list())


def _index_count(cluster: Cluster) -> int:
    index = open_index(cluster.env["DICOMVEIL_INDEX_URL"])
    try:
        return index.counts().instances
    finally:
        index.close()


def _vault_rows(cluster: Cluster) -> int:
    import sqlalchemy

    engine = sqlalchemy.create_engine(cluster.env["DICOMVEIL_VAULT_URL"])
    try:
        with engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text("SELECT count(*) FROM vault_instance"))
            return int(rows.scalar_one())
    finally:
        engine.dispose()


def _assert_exactly_once(cluster: Cluster, count: int) -> None:
    assert _incoming_left(cluster) == 0
    assert _index_count(cluster) == count
    assert _vault_rows(cluster) == count
    archived = _archived(cluster)
    assert len(archived) == count
    for path in archived:
        assert CANARY.encode() not in path.read_bytes()


def _submit(cluster: Cluster, queue: Queue, files: list[Path]) -> None:
    results = cluster.submitter(queue).ingest(files, ORIGIN)
    assert all(r.ok and r.sop_instance_uid for r in results)


def _done(cluster: Cluster, count: int) -> bool:
    return _incoming_left(cluster) == 0 and _index_count(cluster) >= count


def _assert_no_phi(data: bytes) -> None:
    for planted in (CANARY, CANARY_ID):
        assert planted.encode() not in data


@pytest.mark.slow
def test_two_workers_ingest_a_backlog_exactly_once_and_the_broker_holds_no_phi(
    cluster: Cluster, queue: Queue, redis_server: RedisServer, tmp_path: Path
) -> None:
    files = _instances(tmp_path / "received", 16)
    _submit(cluster, queue, files)  # a filled incoming store, no worker running yet
    assert _incoming_left(cluster) == 16
    broker = redis_server.values()
    _assert_no_phi(broker)
    assert b"sha256/" in broker  # the payload names the incoming object, by digest
    cluster.start_worker("a")
    cluster.start_worker("b", "--concurrency", "4")  # threads: tasks share ingest calls
    cluster.wait(lambda: _done(cluster, 16))
    _assert_exactly_once(cluster, 16)
    _submit(cluster, queue, files[:4])  # the same instances again: idempotent
    cluster.wait(lambda: _incoming_left(cluster) == 0)
    _assert_exactly_once(cluster, 16)
    logs = cluster.logs()
    assert logs.count(b"dicomveil.worker INFO task") >= 20
    both = [home for home in cluster.homes() if (home / "audit").exists()]
    assert len(both) == 2  # both workers took part, each with its own audit log
    _assert_no_phi(logs + redis_server.values())


@pytest.mark.slow
def test_a_worker_killed_mid_task_and_a_broker_restart_lose_and_double_nothing(
    cluster: Cluster, queue: Queue, redis_server: RedisServer, tmp_path: Path
) -> None:
    files = _instances(tmp_path / "received", 24, studies=3)
    large = _large_instance(tmp_path / "large", 48)
    _submit(cluster, queue, [*files[:2], large, *files[2:]])
    tail = hashlib.sha256(large.read_bytes()).hexdigest()[-12:]
    cluster.start_worker("a")
    log = cluster.root / "a.log"
    cluster.wait(lambda: f"{tail}.dcm started".encode() in log.read_bytes(), poll=0.01)
    cluster.kill_worker("a")  # mid-task: the large instance is being de-identified
    assert f"{tail}.dcm in ".encode() not in log.read_bytes()
    redis_server.stop()  # the broker goes away and comes back, messages kept
    redis_server.start()
    cluster.start_worker("b")
    cluster.start_worker("c", "--concurrency", "4")
    cluster.wait(lambda: _done(cluster, 25), timeout=90)
    _assert_exactly_once(cluster, 25)
    _assert_no_phi(cluster.logs() + redis_server.values())


@pytest.mark.slow
def test_an_instance_that_cannot_be_made_safe_is_dead_lettered_without_values(
    cluster: Cluster, queue: Queue, tmp_path: Path
) -> None:
    bad = tmp_path / "received" / f"{CANARY}.dcm"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\0" * 128 + b"DICM" + f"{CANARY} not really DICOM".encode())
    good = _instances(tmp_path / "good", 1)
    tenant = dataclasses.replace(ORIGIN, organisation="NORTH")
    cluster.submitter(queue).ingest([bad], tenant)
    cluster.submitter(queue).ingest(good, ORIGIN)
    cluster.start_worker("a")
    cluster.wait(lambda: _done(cluster, 1))
    (home,) = cluster.homes()
    (folder,) = (home / "quarantine").glob("deadletter-*")
    assert run_organisation(folder) == "NORTH"  # the sender's console sees it
    reasons = json.loads((folder / REASONS_NAME).read_text())
    assert len(reasons) == 1 and reasons[0]["reason"]
    assert CANARY not in json.dumps(reasons)
    assert _index_count(cluster) == 1
    _assert_no_phi(cluster.logs())


@pytest.mark.slow
def test_a_postgresql_restart_mid_stream_is_retried_and_doubles_nothing(
    cluster: Cluster, queue: Queue, own_postgres: PostgresServer, tmp_path: Path
) -> None:
    cluster.env["DICOMVEIL_INDEX_URL"] = create_postgres_database(own_postgres.url, "index")
    cluster.env["DICOMVEIL_VAULT_URL"] = create_postgres_database(own_postgres.url, "vault")
    files = _instances(tmp_path / "received", 20)
    _submit(cluster, queue, files)
    cluster.start_worker("a", "--concurrency", "4")  # shared ingest calls meet the outage
    cluster.wait(lambda: _index_count(cluster) >= 3)
    own_postgres.stop()  # vault and index go away under a running worker
    time.sleep(1.5)
    own_postgres.start()
    cluster.start_worker("b")
    cluster.wait(lambda: _done(cluster, 20), timeout=90)
    _assert_exactly_once(cluster, 20)
    assert b"retrying" in cluster.logs()  # the outage was seen, and retried
    _assert_no_phi(cluster.logs())


@pytest.mark.slow
def test_rabbitmq_is_a_broker_too(cluster: Cluster, rabbitmq_url: str, tmp_path: Path) -> None:
    from dicomveil.cluster.settings import ClusterSettings

    cluster.env["DICOMVEIL_QUEUE"] = rabbitmq_url
    sender = Queue(ClusterSettings.load(cluster.config, environ=cluster.env))
    try:
        _submit(cluster, sender, _instances(tmp_path / "received", 6))
    finally:
        sender.close()
    cluster.start_worker("a")
    cluster.start_worker("b")
    cluster.wait(lambda: _done(cluster, 6))
    _assert_exactly_once(cluster, 6)
    _assert_no_phi(cluster.logs())
