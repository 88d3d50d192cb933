"""Health, readiness and metrics (no PHI in any label)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pydicom
import pytest

from dicomveil.index import StudyIndexUnavailable
from dicomveil.web.services import Services
from tests.web.conftest import auth

pytestmark = pytest.mark.anyio


async def test_healthz(client: httpx.AsyncClient) -> None:
    answer = await client.get("/healthz")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


async def test_readyz(client: httpx.AsyncClient) -> None:
    answer = await client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "ready",
        "checks": {"index": True, "vault": True, "storage": True, "audit": True},
    }


async def test_readyz_reports_a_dead_index(
    client: httpx.AsyncClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down() -> None:
        raise StudyIndexUnavailable("index database error while checking (OperationalError)")

    monkeypatch.setattr(services.index, "ping", down)
    answer = await client.get("/readyz")
    assert answer.status_code == 503
    checks = answer.json()["checks"]
    assert checks == {"index": False, "vault": True, "storage": True, "audit": True}
    assert (await client.get("/healthz")).status_code == 200


async def test_metrics(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    archive: dict[str, list[str]],
    demo_files: list[Path],
) -> None:
    await client.get("/dicomweb/studies", params={"PatientID": "X"}, headers=auth(tokens["read"]))
    answer = await client.get("/metrics", headers=auth(tokens["admin"]))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert 'dicomveil_instances_total{entry="stow",outcome="ok"} 12.0' in text
    assert 'dicomveil_index_objects{level="instances"} 12.0' in text
    assert 'route="/dicomweb/studies",status="200"' in text
    # no UID, pseudonymous or original, and no patient value in any label
    for uid in archive["studies"] + archive["series"] + archive["instances"]:
        assert uid not in text
    original = pydicom.dcmread(demo_files[0], stop_before_pixels=True)
    for value in (original.PatientID, str(original.PatientName), original.StudyInstanceUID):
        assert value not in text
