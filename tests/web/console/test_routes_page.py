"""The console's routes page on a gateway whose settings file has a routing rule.

A study stored over STOW-RS completes, its webhook forward fails against a closed port and is
dead-lettered; the page lists it (pseudonymous only), an admin session retries it (audited),
and other roles are refused.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from fastapi import FastAPI

from dicomveil.demo import write_demo_study
from dicomveil.web.app import create_app
from dicomveil.web.settings import Settings
from tests.web.conftest import auth
from tests.web.console.test_console import audit_events, login
from tests.web.support import related_body

pytestmark = pytest.mark.anyio

RULES = """
[routing]
completion_timeout = 0.3
max_attempts = 1
timeout = 2

[[routing.rules]]
name = "notify"
action = "webhook"
url = "http://127.0.0.1:9/hook"
"""


@pytest.fixture
def settings(home: Path, key_file: Path, tmp_path: Path) -> Settings:
    config = tmp_path / "dicomveil.toml"
    config.write_text(RULES)
    return Settings(home=home, key_file=key_file, config_file=config)


@pytest.fixture
def app(settings: Settings) -> Iterator[FastAPI]:
    application = create_app(settings)
    try:
        yield application
    finally:
        application.state.forwarding.stop()
        application.state.services.close()


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        yield c


async def _dead_letter(app: FastAPI, seconds: float = 30) -> None:
    queue = app.state.forwarding.queue
    for _ in range(int(seconds / 0.1)):
        if queue.counts()["dead"]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no dead letter: {queue.counts()}")


async def test_a_dead_letter_is_listed_and_retried_by_an_admin_session(
    app: FastAPI, browser: httpx.AsyncClient, tokens: dict[str, str], home: Path, tmp_path: Path
) -> None:
    files = write_demo_study(tmp_path / "in", patients=1, series_per_study=1, images_per_series=2)
    content_type, body = related_body([p.read_bytes() for p in files])
    stored = await browser.post(
        "/dicomweb/studies",
        content=body,
        headers={"Content-Type": content_type, **auth(tokens["ingest"])},
    )
    assert stored.status_code == 200, stored.text
    study = stored.json()["00081190"]["Value"][0].split("/studies/", 1)[1]
    await _dead_letter(app)
    csrf = await login(browser, tokens["admin"])
    page = await browser.get("/console/routes")
    assert page.status_code == 200
    (job,) = app.state.forwarding.queue.jobs(["dead"])
    assert study in page.text and "notify" in page.text and f"/routes/{job.id}/retry" in page.text
    names = {str(pydicom.dcmread(p).PatientName) for p in files}
    assert not any(name.split("^")[0] in page.text for name in names)
    refused = await browser.post(f"/console/routes/{job.id}/retry", data={"csrf": "forged"})
    assert refused.status_code == 403
    retried = await browser.post(f"/console/routes/{job.id}/retry", data={"csrf": csrf})
    assert retried.status_code == 303
    assert any(event == "forward.retry" for event, _, _ in audit_events(home))
    missing = await browser.post("/console/routes/999999/retry", data={"csrf": csrf})
    assert missing.status_code == 404


async def test_only_admin_sessions_see_the_routes_page(
    browser: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    await login(browser, tokens["read"])
    assert (await browser.get("/console/routes")).status_code == 403


STREAMING_RULES = """
[routing]
completion_timeout = 120
backoff_initial = 60

[[routing.rules]]
name = "pacs"
action = "stow"
url = "http://127.0.0.1:9/dicom-web"
"""


async def test_a_forward_of_a_study_still_arriving_is_marked_streaming(
    home: Path, key_file: Path, tmp_path: Path, tokens: dict[str, str]
) -> None:
    """An on-arrival forward exists before its study is complete: the page says it streams."""
    config = tmp_path / "streaming.toml"
    config.write_text(STREAMING_RULES)
    app = create_app(Settings(home=home, key_file=key_file, config_file=config))
    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            files = write_demo_study(tmp_path / "in", patients=1, series_per_study=1)
            content_type, body = related_body([p.read_bytes() for p in files])
            headers = {"Content-Type": content_type, **auth(tokens["ingest"])}
            stored = await c.post("/dicomweb/studies", content=body, headers=headers)
            assert stored.status_code == 200, stored.text
            (job,) = app.state.forwarding.queue.jobs()
            assert not job.complete
            await login(c, tokens["admin"])
            page = await c.get("/console/routes")
            assert page.status_code == 200
            # its state moves (running, queued after a failed attempt): the mark stays
            assert re.search(rf"<td>{job.id}</td><td>[a-z]+ \(streaming\)</td>", page.text)
    finally:
        app.state.forwarding.stop()
        app.state.services.close()
