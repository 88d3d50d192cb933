"""Direct uploads handed on by S3 bucket notifications through SQS (#15, the optional item).

Real servers on loopback: moto (S3 and SQS in one server; it delivers ``s3:ObjectCreated``
notifications to the queue as S3 does) and Redis as the broker. The client ``PUT``s to the
incoming bucket; no ``complete`` call is made.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dicomveil.cluster.queues import ALL_QUEUES
from dicomveil.cluster.settings import ClusterSettings
from dicomveil.cluster.submit import Queue
from dicomveil.storage import open_store
from dicomveil.uploads import registry as reg
from dicomveil.uploads.notifications import NotificationWatcher, UploadNotices
from dicomveil.uploads.registry import UploadRegistry
from dicomveil.uploads.service import object_key
from dicomveil.uploads.settings import UploadSettings
from tests.support.cloud import AWS_OPTIONS
from tests.worker.conftest import Cluster, RedisServer, aws_environment

pytestmark = pytest.mark.cloud
PHI = b"Smith^Johanna-PHI-0451"


@pytest.fixture
def aws_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The S3 store and boto3's SQS client of the code under test find moto."""
    for name, value in aws_environment(s3_endpoint).items():
        monkeypatch.setenv(name, value)
    return s3_endpoint


@pytest.fixture
def bucket_events(aws_env: str) -> Iterator[tuple[str, str, Any, Any]]:
    """A bucket of its own whose ``ObjectCreated`` events under ``in/incoming/`` go to a new
    SQS queue (visibility timeout 1 s); yields bucket, queue URL, S3 and SQS clients."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=aws_env, **AWS_OPTIONS)
    sqs = boto3.client("sqs", endpoint_url=aws_env, **AWS_OPTIONS)
    bucket, name = f"events-{uuid.uuid4().hex[:12]}", f"q-{uuid.uuid4().hex[:12]}"
    queue_url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    s3.create_bucket(Bucket=bucket)
    rule = {"Key": {"FilterRules": [{"Name": "prefix", "Value": "in/incoming/"}]}}
    config = {
        "QueueArn": arn["Attributes"]["QueueArn"],
        "Events": ["s3:ObjectCreated:*"],
        "Filter": rule,
    }
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [config]}
    )
    try:
        yield bucket, queue_url, s3, sqs
    finally:
        s3.close()
        sqs.close()


def _queued(redis_server: RedisServer) -> int:
    import redis

    client = redis.Redis(port=redis_server.port)
    try:
        return sum(int(client.llen(name)) for name in ALL_QUEUES)
    finally:
        client.close()


def _left(sqs: Any, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def _setup(
    tmp_path: Path, bucket: str, queue_url: str, broker: str
) -> tuple[UploadRegistry, NotificationWatcher, Queue]:
    settings = UploadSettings(database_url=f"sqlite:///{tmp_path / 'uploads.sqlite'}")
    registry = UploadRegistry(settings.database_url)
    cluster = ClusterSettings(queue_url=broker, incoming_url=f"s3://{bucket}/in")
    queue = Queue(cluster)
    notices = UploadNotices(settings, registry, open_store(f"s3://{bucket}/in"), queue)
    return registry, NotificationWatcher(queue_url, notices, wait_seconds=1), queue


def _drain(watcher: NotificationWatcher, sqs: Any, queue_url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        watcher.poll()
        if _left(sqs, queue_url) == 0:
            return
    raise AssertionError(f"notifications left: {_left(sqs, queue_url)}, {watcher.counts}")


def test_objects_are_enqueued_once_as_they_arrive(
    tmp_path: Path,
    bucket_events: tuple[str, str, Any, Any],
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bucket, queue_url, s3, sqs = bucket_events
    registry, watcher, queue = _setup(tmp_path, bucket, queue_url, redis_server.url)
    try:
        upload = uuid.uuid4().hex
        registry.create(upload, "token:up", "STAT", ["00001.dcm", "00002.dcm"], 3600, None)
        s3.put_object(Bucket=bucket, Key="in/" + object_key(upload, "00001.dcm"), Body=b"a")
        _drain(watcher, sqs, queue_url)
        assert _queued(redis_server) == 1
        row = registry.get(upload)
        assert row is not None and row.state == "open"  # one object still to come
        assert [o.state for o in row.objects] == [reg.QUEUED, reg.PENDING]

        # The same object PUT again (a client retrying), a key of no upload carrying a
        # name, an upload id nobody created: nothing more is enqueued.
        s3.put_object(Bucket=bucket, Key="in/" + object_key(upload, "00001.dcm"), Body=b"a")
        s3.put_object(Bucket=bucket, Key=f"in/incoming/{upload}/{PHI.decode()}.dcm", Body=b"b")
        s3.put_object(Bucket=bucket, Key="in/" + object_key("f" * 32, "00001.dcm"), Body=b"c")
        _drain(watcher, sqs, queue_url)
        assert _queued(redis_server) == 1
        assert watcher.counts["already"] == 1 and watcher.counts["unknown"] == 2

        s3.put_object(Bucket=bucket, Key="in/" + object_key(upload, "00002.dcm"), Body=b"dd")
        _drain(watcher, sqs, queue_url)
        assert _queued(redis_server) == 2
        row = registry.get(upload)
        assert row is not None and row.state == "done"  # all handed on: as after complete
        assert [(o.state, o.size) for o in row.objects] == [(reg.QUEUED, 1), (reg.QUEUED, 2)]
        assert watcher.counts["handed_on"] == 2
        assert PHI not in caplog.text.encode()
        assert PHI not in redis_server.values()
    finally:
        registry.close()
        queue.close()


def test_a_broker_outage_keeps_the_notification_for_later(
    tmp_path: Path, bucket_events: tuple[str, str, Any, Any], redis_server: RedisServer
) -> None:
    bucket, queue_url, s3, sqs = bucket_events
    registry, watcher, queue = _setup(tmp_path, bucket, queue_url, redis_server.url)
    try:
        upload = uuid.uuid4().hex
        registry.create(upload, "token:up", "ROUTINE", ["00001.dcm"], 3600, None)
        redis_server.stop()
        s3.put_object(Bucket=bucket, Key="in/" + object_key(upload, "00001.dcm"), Body=b"a")
        deadline = time.monotonic() + 30
        while watcher.counts["kept"] == 0 and time.monotonic() < deadline:
            watcher.poll()
        assert watcher.counts["kept"] >= 1 and watcher.counts["handed_on"] == 0
        assert _left(sqs, queue_url) == 1  # not deleted: SQS hands it out again
        row = registry.get(upload)
        assert row is not None and row.objects[0].state == reg.PENDING
        redis_server.start()
        _drain(watcher, sqs, queue_url)
        assert _queued(redis_server) == 1
        row = registry.get(upload)
        assert row is not None and row.state == "done"
    finally:
        registry.close()
        queue.close()


def test_the_worker_option_needs_the_shared_uploads_database(tmp_path: Path) -> None:
    env = {
        "DICOMVEIL_HOME": str(tmp_path / "home"),
        "DICOMVEIL_QUEUE": "redis://127.0.0.1:1/0",
        "PATH": "/usr/bin:/bin",
    }
    import os

    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")
    answer = subprocess.run(
        [sys.executable, "-m", "dicomveil", "worker", "--upload-events", "http://127.0.0.1:1/q"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert answer.returncode != 0
    assert b"uploads database the gateways use" in answer.stderr + answer.stdout


@pytest.mark.slow
def test_a_worker_ingests_uploads_its_notifications_name(
    cluster: Cluster,
    bucket_events: tuple[str, str, Any, Any],
    aws_env: str,
    tmp_path: Path,
) -> None:
    """``dicomveil worker --upload-events``: objects PUT to an upload are de-identified and
    indexed without a ``complete`` call; the upload ends ``done``."""
    from dicomveil.demo import write_demo_study
    from dicomveil.index import open_index

    bucket, queue_url, s3, sqs = bucket_events
    uploads_url = f"sqlite:///{tmp_path / 'shared-uploads.sqlite'}"  # the gateways' too
    with cluster.config.open("a", encoding="utf-8") as config:
        config.write(f'\n[uploads]\ndatabase_url = "{uploads_url}"\n')
    cluster.env.update(aws_environment(aws_env), DICOMVEIL_INCOMING_URL=f"s3://{bucket}/in")
    files = write_demo_study(tmp_path / "originals", patients=1, images_per_series=2)
    registry = UploadRegistry(uploads_url)
    try:
        upload = uuid.uuid4().hex
        names = [f"{n:05d}.dcm" for n in range(1, len(files) + 1)]
        registry.create(upload, "token:up", "ROUTINE", names, 3600, None)
        cluster.start_worker("w1", "--upload-events", queue_url, "--queues", "stat,routine")
        for name, path in zip(names, files, strict=True):
            key = "in/" + object_key(upload, name)
            s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())

        def indexed() -> int:
            index = open_index(cluster.env["DICOMVEIL_INDEX_URL"])
            try:
                return index.counts().instances
            finally:
                index.close()

        cluster.wait(lambda: indexed() == len(files), timeout=90)
        row = registry.get(upload)
        assert row is not None and row.state == "done"
        assert {o.state for o in row.objects} == {reg.QUEUED}
        cluster.wait(lambda: _left(sqs, queue_url) == 0, timeout=30)
        incoming = s3.list_objects_v2(Bucket=bucket, Prefix="in/").get("KeyCount", 0)
        assert incoming == 0  # the workers deleted every original
        for path in files:  # nothing of the originals' names in the log
            assert path.stem.encode() not in cluster.logs()
    finally:
        registry.close()
