"""The cluster core without servers: payload schema, queue routing, settings, JSON only."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomveil.cluster.broker import celery_config, public_queue_url
from dicomveil.cluster.payload import TaskPayload, incoming_key
from dicomveil.cluster.queues import (
    ALL_QUEUES,
    LARGE_BYTES,
    LARGE_QUEUE,
    Priority,
    parse_queues,
    queue_for,
)
from dicomveil.cluster.settings import ClusterSettings
from dicomveil.errors import ConfigError

DIGEST = "ab" * 32


def test_a_payload_round_trips_as_json_and_names_an_object_by_its_digest() -> None:
    payload = TaskPayload(incoming_key(DIGEST), DIGEST, 10, Priority.STAT, "dimse", "ae:CT01")
    body = payload.to_json()
    assert body["key"] == f"sha256/{DIGEST}.dcm"
    assert TaskPayload.from_json(body) == payload
    import json

    assert TaskPayload.from_json(json.loads(json.dumps(body))) == payload


def test_a_payload_carries_the_senders_organisation() -> None:
    payload = TaskPayload(incoming_key(DIGEST), DIGEST, 10, organisation="NORTH")
    assert TaskPayload.from_json(payload.to_json()).organisation == "NORTH"
    assert TaskPayload.from_json({"v": 1, "key": "a.dcm"}).organisation is None
    # the same bytes from two organisations are two objects: ingesting one keeps the other
    assert (
        len({incoming_key(DIGEST), incoming_key(DIGEST, "NORTH"), incoming_key(DIGEST, "SOUTH")})
        == 3
    )
    with pytest.raises(ValueError):
        incoming_key(DIGEST, "../x")


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"v": 2, "key": "a.dcm"},
        {"v": 1},
        {"v": 1, "key": "../etc/passwd"},
        {"v": 1, "key": "/abs.dcm"},
        {"v": 1, "key": "a.dcm", "PatientName": "DOE^JOHN"},
        {"v": 1, "key": "a.dcm", "sha256": "XYZ"},
        {"v": 1, "key": "a.dcm", "size": "1"},
        {"v": 1, "key": "a.dcm", "priority": "now"},
        {"v": 1, "key": "a.dcm", "actor": "x\n"},
        {"v": 1, "key": "a.dcm", "enqueued_at": True},
        {"v": 1, "key": "a.dcm", "organisation": "../NORTH"},
        {"v": 1, "key": "a.dcm", "organisation": 7},
    ],
)
def test_anything_but_the_schema_is_refused(body: object) -> None:
    with pytest.raises(ValueError):
        TaskPayload.from_json(body)


def test_incoming_names_come_only_from_digests() -> None:
    with pytest.raises(ValueError):
        incoming_key("DOE^JOHN")


def test_large_instances_go_to_their_own_queue_and_stat_comes_first() -> None:
    assert queue_for(Priority.STAT, LARGE_BYTES) == LARGE_QUEUE
    assert queue_for(Priority.STAT, LARGE_BYTES - 1) == "dicomveil.stat"
    assert ALL_QUEUES[0] == "dicomveil.stat" and ALL_QUEUES[-1] == LARGE_QUEUE
    assert parse_queues("large, stat") == (LARGE_QUEUE, "dicomveil.stat")
    with pytest.raises(ValueError, match="unknown queue"):
        parse_queues("fast")


def test_the_wire_is_json_only_with_late_acks_and_one_message_in_hand() -> None:
    config = celery_config(ClusterSettings(queue_url="redis://127.0.0.1:6379/0"))
    assert config["accept_content"] == ["json"] and config["task_serializer"] == "json"
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    assert config["broker_transport_options"]["queue_order_strategy"] == "priority"
    amqp = celery_config(ClusterSettings(queue_url="amqp://u:p@h//"))
    assert amqp["broker_transport_options"] == {"confirm_publish": True}


def test_settings_come_from_the_file_then_the_environment_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[cluster]\nqueue_url = "redis://file/0"\nlarge_bytes = 10\n')
    env = {"DICOMVEIL_QUEUE": "redis://env/0", "DICOMVEIL_INCOMING_URL": "s3://in/x"}
    loaded = ClusterSettings.load(config, environ=env)
    assert (loaded.queue_url, loaded.incoming_url, loaded.large_bytes) == (
        "redis://env/0",
        "s3://in/x",
        10,
    )
    assert ClusterSettings.load(config, environ=env, queue_url="amqp://x//").queue_url
    assert ClusterSettings.load(environ={}).incoming(tmp_path) == f"file://{tmp_path}/incoming"
    config.write_text('[cluster]\nqueue = "redis://x"\n')
    with pytest.raises(ConfigError, match="unknown"):
        ClusterSettings.load(config, environ={})
    with pytest.raises(ConfigError, match="redis"):
        ClusterSettings.load(environ={"DICOMVEIL_QUEUE": "http://x"})


def test_the_queue_url_is_shown_without_its_password() -> None:
    assert public_queue_url("amqp://user:s3cret@host//") == "amqp://user:***@host//"
    assert "s3cret" not in public_queue_url("redis://:s3cret@host:6379/0")
