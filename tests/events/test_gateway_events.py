"""Signed CloudEvents from the gateway (#15): STOW-RS → instance.stored and study.complete,
delivered to a real HTTP receiver on loopback, signatures verified, no PHI in any body."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from fastapi import FastAPI

from dicomveil.events import SIGNATURE_HEADER, verify
from dicomveil.web import Settings, create_app
from tests.events.conftest import Receiver
from tests.web.conftest import auth
from tests.web.support import related_body

pytestmark = pytest.mark.anyio

SECRET = "events-secret-0123456789"


@pytest.fixture
def events_app(
    home: Path,
    key_file: Path,
    tmp_path: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[FastAPI]:
    monkeypatch.setenv("DICOMVEIL_EVENTS_SECRET", SECRET)
    config = tmp_path / "dicomveil.toml"
    config.write_text(
        f'[events]\nendpoints = ["{receiver.url}"]\nbackoff_seconds = 0.05\n\n'
        "[routing]\ncompletion_timeout = 1\n\n"
        f'[[routing.rules]]\nname = "notify"\naction = "webhook"\nurl = "{receiver.url}2"\n',
        encoding="utf-8",
    )
    application = create_app(Settings(home=home, key_file=key_file, config_file=config))
    try:
        yield application
    finally:
        application.state.services.close()
        application.state.events.stop()
        application.state.forwarding.stop()


def _phi(files: list[Path]) -> set[bytes]:
    values: set[bytes] = set()
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID",
                        "SeriesInstanceUID", "SOPInstanceUID", "AccessionNumber"):  # fmt: skip
            text = str(ds.get(keyword, "")).encode()
            if len(text) > 3:
                values.add(text)
    return values


async def test_stow_emits_signed_instance_and_study_events_without_phi(
    events_app: FastAPI,
    tokens: dict[str, str],
    demo_files: list[Path],
    receiver: Receiver,
) -> None:
    files = demo_files[:3]
    content_type, body = related_body([p.read_bytes() for p in files])
    transport = httpx.ASGITransport(app=events_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        answer = await client.post(
            "/dicomweb/studies",
            content=body,
            headers={**auth(tokens["ingest"]), "Content-Type": content_type},
        )
    assert answer.status_code == 200, answer.text
    # 3 instance.stored + 1 study.complete on /hook, + the routing rule's own webhook
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        kinds = [json.loads(b)["type"] for p, _, b in receiver.requests if p == "/hook"]
        if len(kinds) >= 4:
            break
        time.sleep(0.05)
    events = [(h, b) for p, h, b in receiver.requests if p == "/hook"]
    kinds = sorted(json.loads(b)["type"] for _, b in events)
    assert kinds == ["org.dicomveil.instance.stored"] * 3 + ["org.dicomveil.study.complete"]
    phi = _phi(files)
    assert phi
    for headers, raw in events:
        assert headers["Content-Type"].startswith("application/cloudevents+json")
        assert verify(SECRET.encode(), raw, headers[SIGNATURE_HEADER])
        assert not verify(b"not-the-secret-at-all", raw, headers[SIGNATURE_HEADER])
        event = json.loads(raw)
        assert event["specversion"] == "1.0" and event["source"] == "/dicomveil"
        assert {"id", "time", "subject", "datacontenttype", "data"} <= set(event)
        for value in phi:
            assert value not in raw
    complete = next(json.loads(b) for _, b in events if b"study.complete" in b)
    assert complete["data"]["instances"] == 3 and complete["data"]["source"] == "stow"
    stored = [json.loads(b)["data"] for _, b in events if b"instance.stored" in b]
    assert {s["study_uid"] for s in stored} == {complete["subject"]}
    assert all(s["entry"] == "stow" for s in stored)


async def test_a_shipped_batch_emits_batch_shipped(
    home: Path,
    key_file: Path,
    tmp_path: Path,
    receiver: Receiver,
    tokens: dict[str, str],
    demo_files: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DICOMVEIL_EVENTS_SECRET", SECRET)
    config = tmp_path / "dicomveil.toml"
    config.write_text(
        f'[events]\nendpoints = ["{receiver.url}"]\ntypes = ["org.dicomveil.batch.shipped"]\n',
        encoding="utf-8",
    )
    settings = Settings(
        home=home, key_file=key_file, config_file=config, batch_url=f"file://{tmp_path / 'out'}"
    )
    app = create_app(settings)
    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            files = [("files", (f"{i}.dcm", p.read_bytes(), "application/dicom"))
                     for i, p in enumerate(demo_files[:4])]  # fmt: skip
            answer = await client.post(
                "/api/v1/batches", files=files, headers=auth(tokens["ingest"])
            )
            assert answer.status_code == 202, answer.text
            batch_id = answer.json()["batch_id"]
            receiver.wait_for(1)
    finally:
        app.state.services.close()
        app.state.events.stop()
    ((_, headers, raw),) = receiver.requests
    event = json.loads(raw)
    assert event["type"] == "org.dicomveil.batch.shipped" and event["subject"] == batch_id
    assert event["data"] == {"batch_id": batch_id, "instances": 4, "studies": 1}
    assert verify(SECRET.encode(), raw, headers[SIGNATURE_HEADER])
