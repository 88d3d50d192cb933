"""The outbox and its sender against a real HTTP receiver: retries with backoff, dead after
N attempts, and events recorded while the receiver was down survive a restart."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from dicomveil.errors import ConfigError
from dicomveil.events import Events, verify
from dicomveil.events.cloudevents import STUDY_COMPLETE
from dicomveil.events.settings import EventSettings
from dicomveil.events.signing import SIGNATURE_HEADER
from tests.events.conftest import Receiver, serve
from tests.support.servers import free_port

SECRET = b"outbox-secret-0123456789"


def _settings(tmp_path: Path, url: str, **overrides: object) -> EventSettings:
    values: dict[str, object] = {
        "database_url": f"sqlite:///{tmp_path / 'events.sqlite'}",
        "endpoints": (url,),
        "secrets": (SECRET,),
        "backoff_seconds": 0.05,
        "max_backoff_seconds": 0.2,
        "timeout": 2.0,
        **overrides,
    }
    return EventSettings(**values)  # type: ignore[arg-type]


def _event(n: int) -> tuple[str, str, dict[str, object]]:
    return (STUDY_COMPLETE, f"2.25.{n}", {"study_uid": f"2.25.{n}", "instances": n})


def _wait(events: Events, state: str, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while events.outbox.counts().get(state, 0) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"outbox: {events.outbox.counts()}")
        time.sleep(0.02)


def test_retries_then_delivers_the_same_event(tmp_path: Path, receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    events = Events(_settings(tmp_path, receiver.url), "/dicomveil")
    events.start()
    try:
        events.publish([_event(1)])
        receiver.wait_for(3)
        _wait(events, "delivered", 1)
    finally:
        events.stop()
    ids = {json.loads(body)["id"] for _, _, body in receiver.requests}
    assert len(ids) == 1  # a retry carries the same id (the receiver's de-duplication key)
    for _, headers, body in receiver.requests:
        assert verify(SECRET, body, headers[SIGNATURE_HEADER])


def test_dead_after_max_attempts(tmp_path: Path, receiver: Receiver) -> None:
    receiver.statuses = [500] * 10
    events = Events(_settings(tmp_path, receiver.url, max_attempts=3), "/dicomveil")
    events.start()
    try:
        events.publish([_event(2)])
        _wait(events, "dead", 1)
    finally:
        events.stop()
    assert len(receiver.requests) == 3


def test_outbox_survives_a_restart(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    first = Events(_settings(tmp_path, url, backoff_seconds=0.05), "/dicomveil")
    first.start()
    first.publish([_event(3), _event(4)])  # nobody listens: connection refused, retried
    time.sleep(0.3)
    first.stop()  # the process goes away with two events pending
    state = Receiver()
    server = serve(state, port)
    try:
        second = Events(_settings(tmp_path, url), "/dicomveil")
        assert second.outbox.counts().get("pending") == 2
        second.start()
        try:
            state.wait_for(2)
            _wait(second, "delivered", 2)
        finally:
            second.stop()
    finally:
        server.shutdown()
        server.server_close()
    subjects = sorted(json.loads(body)["subject"] for _, _, body in state.requests)
    assert subjects == ["2.25.3", "2.25.4"]


def test_settings_need_a_secret_and_http_endpoints(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[events]\nendpoints = ["https://hooks.example/x"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="secret"):
        EventSettings.load(config, home=tmp_path, environ={})
    loaded = EventSettings.load(
        config, home=tmp_path, environ={"DICOMVEIL_EVENTS_SECRET": "a" * 20}
    )
    assert loaded.enabled and loaded.secrets == (b"a" * 20,)
    assert "a" * 20 not in repr(loaded)
    config.write_text('[events]\nendpoints = ["file:///etc/passwd"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="http"):
        EventSettings.load(config, home=tmp_path, environ={"DICOMVEIL_EVENTS_SECRET": "a" * 20})


def test_quarantine_and_batch_events_carry_hashes_and_counts_only(
    tmp_path: Path, receiver: Receiver
) -> None:
    events = Events(_settings(tmp_path, receiver.url), "/dicomveil/HOSP1")
    events.start()
    try:
        events.on_quarantined([("ab" * 32, "MalformedInputError")])
        events.on_batch_shipped("b-1f2e", instances=500, studies=1)
        receiver.wait_for(2)
    finally:
        events.stop()
    bodies = sorted((json.loads(b) for _, _, b in receiver.requests), key=lambda e: e["type"])
    assert [e["type"] for e in bodies] == [
        "org.dicomveil.batch.shipped",
        "org.dicomveil.file.quarantined",
    ]
    assert bodies[0]["data"] == {"batch_id": "b-1f2e", "instances": 500, "studies": 1}
    assert bodies[1]["data"] == {
        "sha256": "ab" * 32,
        "reason": "MalformedInputError",
        "entry": "upload",
    }
    assert all(e["source"] == "/dicomveil/HOSP1" for e in bodies)


def test_the_outbox_follows_the_shared_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``--database`` (here ``DICOMVEIL_DATABASE_URL``) the outbox table is there, not
    in the state folder."""
    from sqlalchemy import create_engine, inspect

    from dicomveil.database import state_url

    home = tmp_path / "home"
    shared = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    monkeypatch.setenv("DICOMVEIL_DATABASE_URL", shared)
    settings = EventSettings.load(None, home=home)
    assert settings.database_url == state_url(home, "events", shared)
    assert str(home) not in settings.database_url
    Events(settings, "/dicomveil").stop()  # creates the table
    tables = inspect(create_engine(settings.database_url)).get_table_names()
    assert "dicomveil_events_outbox" in tables
    monkeypatch.delenv("DICOMVEIL_DATABASE_URL")
    alone = EventSettings.load(None, home=home)
    assert alone.database_url == f"sqlite:///{home / 'events.sqlite'}"
