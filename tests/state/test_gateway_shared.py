"""Two gateways with separate state folders on one ``--database``: a token made for one is
honoured by the other, a study stored through one is found through the other, both are
ready, and the audit chain they write together verifies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from dicomveil.demo import write_demo_study
from dicomveil.tokens import token_store
from dicomveil.web import Settings, create_app
from tests.state.test_shared_runtime import KEYS
from tests.web.support import related_body

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def gateways(
    shared_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[list[httpx.AsyncClient], list[FastAPI]]]:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    for name in ("DICOMVEIL_DATABASE_URL", "DICOMVEIL_INDEX_URL", "DICOMVEIL_VAULT_URL"):
        monkeypatch.delenv(name, raising=False)
    apps = [
        create_app(Settings(home=tmp_path / host, database_url=shared_db, deid_processes=1))
        for host in ("host-a", "host-b")
    ]
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        for app in apps
    ]
    try:
        yield clients, apps
    finally:
        for client, app in zip(clients, apps, strict=True):
            await client.aclose()
            app.state.services.close()


async def test_gateways_share_tokens_archive_index_and_audit(
    gateways: tuple[list[httpx.AsyncClient], list[FastAPI]], shared_db: str, tmp_path: Path
) -> None:
    clients, apps = gateways
    a, b = clients
    store = token_store(tmp_path / "elsewhere", shared_db)  # the admin's own host
    ingest = store.create("ingest", "modality")[1]
    read = store.create("read", "viewer")[1]
    files = write_demo_study(tmp_path / "in", patients=1, series_per_study=1, images_per_series=2)
    content_type, body = related_body([path.read_bytes() for path in files])
    stored = await a.post(
        "/dicomweb/studies",
        content=body,
        headers={"Authorization": f"Bearer {ingest}", "Content-Type": content_type},
    )
    assert stored.status_code == 200, stored.text
    found = await b.get("/dicomweb/studies", headers={"Authorization": f"Bearer {read}"})
    assert found.status_code == 200, found.text
    assert len(found.json()) == 1
    for client in clients:
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["audit"] is True
    (reader,) = store.find("viewer")
    store.revoke(reader.id)
    refused = await b.get("/dicomweb/studies", headers={"Authorization": f"Bearer {read}"})
    assert refused.status_code == 401
    store.close()
    result = apps[1].state.services.audit.verify()  # host B verifies what host A wrote
    assert result.ok and result.entries >= 1, str(result)
