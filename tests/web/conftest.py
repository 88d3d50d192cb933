"""Fixtures for the gateway tests: an app on a private state folder, tokens, a client.

The HTTP layer is exercised in-process through httpx's ASGI transport (no sockets).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from dicomveil.demo import write_demo_study
from dicomveil.tokens import ROLES, token_store
from dicomveil.web import Settings, create_app
from dicomveil.web.services import Services
from tests.web.support import TEST_KEY

KEY_VARIABLES = (
    "DICOMVEIL_KEY",
    "DICOMVEIL_VAULT_KEY",
    "DICOMVEIL_AUDIT_KEY",
    "DICOMVEIL_VAULT_URL",
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private $DICOMVEIL_HOME, with no key or URL from the environment."""
    folder = tmp_path / "home"
    monkeypatch.setenv("DICOMVEIL_HOME", str(folder))
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)
    for name in (
        "DICOMVEIL_STORAGE_URL",
        "DICOMVEIL_INDEX_URL",
        "DICOMVEIL_IMPORT_ROOT",
        "DICOMVEIL_DATABASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    return folder


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "pseudonym.key"
    path.write_text(TEST_KEY + "\n")
    return path


@pytest.fixture
def settings(home: Path, key_file: Path) -> Settings:
    return Settings(home=home, key_file=key_file)


@pytest.fixture
def app(settings: Settings) -> Iterator[FastAPI]:
    application = create_app(settings)
    try:
        yield application
    finally:
        application.state.services.close()


@pytest.fixture
def services(app: FastAPI) -> Services:
    found: Services = app.state.services
    return found


@pytest.fixture
def tokens(home: Path) -> dict[str, str]:
    """One token per role, by role name."""
    store = token_store(home)
    return {role: store.create(role, f"test-{role}")[1] for role in ROLES}


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def actor(home: Path, role: str) -> str:
    """The audit actor of the ``tokens`` fixture's token for ``role`` (``token:<id>``)."""
    (token,) = token_store(home).find(f"test-{role}")
    return token.actor


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def demo_files(tmp_path: Path) -> list[Path]:
    """Two patients, one study each, two series of three CT images: 12 files full of PHI."""
    return write_demo_study(
        tmp_path / "originals", patients=2, series_per_study=2, images_per_series=3
    )


@pytest.fixture
async def archive(
    client: httpx.AsyncClient, tokens: dict[str, str], demo_files: list[Path]
) -> dict[str, list[str]]:
    """The demo files stored through STOW-RS; the pseudonymous UIDs by level."""
    from tests.web.support import first, related_body

    content_type, body = related_body([p.read_bytes() for p in demo_files])
    answer = await client.post(
        "/dicomweb/studies",
        content=body,
        headers={**auth(tokens["ingest"]), "Content-Type": content_type},
    )
    assert answer.status_code == 200, answer.text
    urls = [str(first(item["00081190"])) for item in answer.json()["00081199"]["Value"]]
    parts = [url.split("/dicomweb/", 1)[1].split("/") for url in urls]
    return {
        "studies": sorted({p[1] for p in parts}),
        "series": sorted({p[3] for p in parts}),
        "instances": sorted({p[5] for p in parts}),
        "urls": urls,
    }
