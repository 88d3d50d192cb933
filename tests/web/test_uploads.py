"""Direct uploads (#15): pre-signed PUT URLs against real emulators, complete, then QIDO-RS.

The client side is plain ``requests``: the signed URL and its headers are all it gets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
import requests
from fastapi import FastAPI

from dicomveil.web import Settings, create_app
from tests.support.cloud import AWS_OPTIONS, BUCKET
from tests.web.conftest import auth

pytestmark = pytest.mark.anyio

PHI_NAME = b"UPLOAD^PLANTED^PHI"


def _config(tmp_path: Path, incoming: str, extra: str = "") -> Path:
    path = tmp_path / "dicomveil.toml"
    path.write_text(f'[cluster]\nincoming_url = "{incoming}"\n{extra}', encoding="utf-8")
    return path


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_OPTIONS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_OPTIONS["aws_secret_access_key"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", AWS_OPTIONS["region_name"])
    return s3_endpoint


def _app(home: Path, key_file: Path, config: Path) -> Iterator[FastAPI]:
    application = create_app(Settings(home=home, key_file=key_file, config_file=config))
    try:
        yield application
    finally:
        uploads = getattr(application.state, "uploads", None)
        if uploads is not None:
            uploads.close()
        application.state.services.close()


@pytest.fixture
def s3_app(s3_env: str, home: Path, key_file: Path, tmp_path: Path) -> Iterator[FastAPI]:
    prefix = f"in-{uuid.uuid4().hex[:10]}"
    yield from _app(home, key_file, _config(tmp_path, f"s3://{BUCKET}/{prefix}"))


async def _client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def _planted(files: list[Path]) -> list[bytes]:
    """The demo files (full of PHI: names, birth dates, original UIDs)."""
    return [path.read_bytes() for path in files]


def _phi(files: list[Path]) -> set[bytes]:
    """Values of the originals that must never show in an answer or a log."""
    values: set[bytes] = set()
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "SOPInstanceUID"):
            values.add(str(ds.get(keyword, "")).encode())
    return values - {b""}


async def _wait_done(client: httpx.AsyncClient, token: str, upload_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = await client.get(f"/api/v1/uploads/{upload_id}", headers=auth(token))
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        if body["state"] == "done":
            return body
        await asyncio.sleep(0.1)
    raise AssertionError("the upload did not complete in 60 s")


def _put_all(urls: list[dict[str, Any]], blobs: list[bytes]) -> None:
    for item, blob in zip(urls, blobs, strict=False):
        answer = requests.put(item["url"], data=blob, headers=item["headers"], timeout=30)
        assert answer.status_code in (200, 201), answer.text


async def _round_trip(
    app: FastAPI, tokens: dict[str, str], demo_files: list[Path], missing: int = 0
) -> dict[str, Any]:
    ingest = tokens["ingest"]
    blobs = _planted(demo_files)
    async with await _client(app) as client:
        answer = await client.post(
            "/api/v1/uploads", json={"count": len(blobs) + missing}, headers=auth(ingest)
        )
        assert answer.status_code == 201, answer.text
        created = answer.json()
        assert set(created) >= {"upload_id", "urls"}
        assert all(set(u) == {"name", "url", "headers"} for u in created["urls"])
        upload_id = created["upload_id"]
        assert all(f"incoming/{upload_id}/" in u["url"] for u in created["urls"])
        await asyncio.to_thread(_put_all, created["urls"], blobs)
        done = await client.post(f"/api/v1/uploads/{upload_id}/complete", headers=auth(ingest))
        assert done.status_code == 202, done.text
        assert done.json()["status_url"] == f"/api/v1/uploads/{upload_id}"
        again = await client.post(f"/api/v1/uploads/{upload_id}/complete", headers=auth(ingest))
        assert again.status_code == 202  # idempotent
        progress = await _wait_done(client, ingest, upload_id)
        found = await client.get("/dicomweb/instances", headers=auth(tokens["read"]))
        assert found.status_code == 200, found.text
        progress["qido_instances"] = len(found.json())
        progress["raw"] = (await client.get(progress_url(upload_id), headers=auth(ingest))).content
    return progress


def progress_url(upload_id: str) -> str:
    return f"/api/v1/uploads/{upload_id}"


@pytest.mark.cloud
async def test_s3_round_trip_reaches_qido_and_removes_originals(
    s3_app: FastAPI,
    tokens: dict[str, str],
    demo_files: list[Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    progress = await _round_trip(s3_app, tokens, demo_files, missing=1)
    assert progress["counts"] == {"stored": len(demo_files), "missing": 1}
    assert progress["qido_instances"] == len(demo_files)
    assert all(o["status"] in ("0000", None) for o in progress["objects"])
    service = s3_app.state.uploads
    assert list(service.incoming.list("incoming/")) == []  # originals deleted once stored
    logged = "\n".join(r.getMessage() for r in caplog.records).encode()
    for value in _phi(demo_files):
        assert value not in progress["raw"]
        assert value not in logged


async def test_roles_and_ownership(s3_app: FastAPI, tokens: dict[str, str], home: Path) -> None:
    async with await _client(s3_app) as client:
        body = {"count": 1}
        assert (await client.post("/api/v1/uploads", json=body)).status_code == 401
        for role in ("read", "admin", "reidentify"):
            answer = await client.post("/api/v1/uploads", json=body, headers=auth(tokens[role]))
            assert answer.status_code == 403, role
        too_many = await client.post(
            "/api/v1/uploads", json={"count": 10**6}, headers=auth(tokens["ingest"])
        )
        assert too_many.status_code == 400
        created = await client.post("/api/v1/uploads", json=body, headers=auth(tokens["ingest"]))
        upload_id = created.json()["upload_id"]
        empty = await client.post(
            f"/api/v1/uploads/{upload_id}/complete", headers=auth(tokens["ingest"])
        )
        assert empty.status_code == 409  # nothing uploaded yet
        from dicomveil.tokens import token_store

        _, other = token_store(home).create("ingest", "another-ingest")
        for path in (f"/api/v1/uploads/{upload_id}", f"/api/v1/uploads/{upload_id}/complete"):
            method = client.get if path.endswith(upload_id) else client.post
            assert (await method(path, headers=auth(other))).status_code == 404
        bad = await client.get("/api/v1/uploads/..%2F..%2Fetc", headers=auth(tokens["ingest"]))
        assert bad.status_code == 404


async def test_local_incoming_store_answers_409(
    home: Path, key_file: Path, tmp_path: Path, tokens: dict[str, str]
) -> None:
    for app in _app(home, key_file, _config(tmp_path, f"file://{tmp_path / 'incoming'}")):
        async with await _client(app) as client:
            answer = await client.post(
                "/api/v1/uploads", json={"count": 1}, headers=auth(tokens["ingest"])
            )
        assert answer.status_code == 409
        assert "bucket" in answer.text


@pytest.fixture
def azure_app(
    azurite: str, monkeypatch: pytest.MonkeyPatch, home: Path, key_file: Path, tmp_path: Path
) -> Iterator[FastAPI]:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite)
    prefix = f"in-{uuid.uuid4().hex[:10]}"
    yield from _app(home, key_file, _config(tmp_path, f"az://{BUCKET}/{prefix}"))


@pytest.mark.cloud
async def test_azure_sas_round_trip(
    azure_app: FastAPI, tokens: dict[str, str], demo_files: list[Path]
) -> None:
    """Azurite checks the SAS signature: a URL signed with another key is refused."""
    progress = await _round_trip(azure_app, tokens, demo_files[:3])
    assert progress["counts"] == {"stored": 3}
    assert progress["qido_instances"] == 3
    async with await _client(azure_app) as client:
        answer = await client.post(
            "/api/v1/uploads", json={"count": 1}, headers=auth(tokens["ingest"])
        )
    (item,) = answer.json()["urls"]
    assert "sp=cw" in item["url"] or "sp=wc" in item["url"]  # create/write only, no read
    forged = item["url"].replace("sig=", "sig=AAAA")
    refused = requests.put(forged, data=b"x", headers=item["headers"], timeout=30)
    assert refused.status_code == 403


@pytest.mark.cloud
async def test_failed_originals_move_to_the_quarantine(
    s3_app: FastAPI, tokens: dict[str, str], demo_files: list[Path], home: Path
) -> None:
    """An uploaded instance that cannot be made safe leaves the incoming store for the
    quarantine (named by its SHA-256), and its outcome says why, value-free."""
    broken = demo_files[0].read_bytes()[:600]  # a DICOM file cut short
    ingest = tokens["ingest"]
    async with await _client(s3_app) as client:
        created = (
            await client.post("/api/v1/uploads", json={"count": 2}, headers=auth(ingest))
        ).json()
        await asyncio.to_thread(_put_all, created["urls"], [demo_files[1].read_bytes(), broken])
        upload_id = created["upload_id"]
        done = await client.post(f"/api/v1/uploads/{upload_id}/complete", headers=auth(ingest))
        assert done.status_code == 202
        progress = await _wait_done(client, ingest, upload_id)
    assert progress["counts"] == {"stored": 1, "quarantined": 1}
    (bad,) = [o for o in progress["objects"] if o["state"] == "quarantined"]
    assert bad["failure"] and bad["status"] not in (None, "0000")
    assert list(s3_app.state.uploads.incoming.list("incoming/")) == []
    folder = home / "quarantine" / f"upload-{upload_id}"
    reasons = (folder / "reasons.json").read_text(encoding="utf-8")
    assert len(list(folder.glob("*.dcm"))) == 1
    assert not (folder / "run.json").exists()  # an unbound token's: no organisation
    for value in _phi(demo_files[:1]):
        assert value.decode() not in reasons


@pytest.mark.cloud
async def test_an_organisations_upload_is_filed_under_it_with_its_prefix(
    s3_env: str, home: Path, key_file: Path, tmp_path: Path, demo_files: list[Path]
) -> None:
    """An upload by a token bound to an organisation is de-identified with that
    organisation's pseudonym prefix and read only by that organisation (and the unscoped);
    what it sends that cannot be made safe is quarantined as that organisation's."""
    from dicomveil.tokens import token_store

    prefix = f"in-{uuid.uuid4().hex[:10]}"
    orgs = '[organisations.NORTH]\npseudonym_prefix = "NRT"\n\n[organisations.SOUTH]\n'
    config = _config(tmp_path, f"s3://{BUCKET}/{prefix}", "\n" + orgs)
    store = token_store(home)
    ingest = store.create("ingest", "north-upload", org="NORTH")[1]
    readers = {
        org: store.create("read", f"read-{org or 'all'}", org=org)[1]
        for org in ("NORTH", "SOUTH", "")
    }
    for app in _app(home, key_file, config):
        async with await _client(app) as client:
            answer = await client.post(
                "/api/v1/uploads", json={"count": len(demo_files) + 1}, headers=auth(ingest)
            )
            assert answer.status_code == 201, answer.text
            upload_id = answer.json()["upload_id"]
            broken = demo_files[0].read_bytes()[:600]  # cut short: quarantined
            objects = [*_planted(demo_files), broken]
            await asyncio.to_thread(_put_all, answer.json()["urls"], objects)
            done = await client.post(f"/api/v1/uploads/{upload_id}/complete", headers=auth(ingest))
            assert done.status_code == 202, done.text
            await _wait_done(client, ingest, upload_id)
            seen = {}
            for org, token in readers.items():
                found = await client.get("/dicomweb/studies", headers=auth(token))
                assert found.status_code in (200, 204), found.text
                seen[org] = found.json() if found.status_code == 200 else []
    assert len(seen["NORTH"]) == len(seen[""]) == 2  # two patients, one study each
    assert seen["SOUTH"] == []
    patient_ids = {str(study["00100020"]["Value"][0]) for study in seen["NORTH"]}
    assert all(pid.startswith("NRT") for pid in patient_ids), patient_ids
    run = home / "quarantine" / f"upload-{upload_id}"
    assert json.loads((run / "run.json").read_text()) == {"organisation": "NORTH"}
