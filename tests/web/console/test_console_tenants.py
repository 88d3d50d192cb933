"""The console of a token bound to an organisation (tenant, issue #14): its dashboard counts
its organisation's studies only and leaves out the server-wide figures; its batch pages list
and open its organisation's batches only; nothing another organisation sent (study UID, batch
id) is in any page it gets. A quarantined run recorded as no organisation's (an older one)
is not shown to a bound session, nor released by it (an unbound one can)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from dicomveil.demo import write_demo_study
from dicomveil.tokens import token_store
from dicomveil.web import Settings
from tests.tenant_config import write_organisations
from tests.web.conftest import auth
from tests.web.console.test_console import browser, login  # noqa: F401 - browser: fixture
from tests.web.support import first, related_body
from tests.web.test_batches import finished

pytestmark = pytest.mark.anyio

_ORGS = ("NORTH", "SOUTH")
_PAGES = ("/console/", "/console/studies", "/console/batches", "/console/policy")


@pytest.fixture
def settings(home: Path, key_file: Path, tmp_path: Path) -> Settings:
    """The gateway's (its app: the gateway fixtures): two organisations, batches."""
    config = write_organisations(tmp_path, {"NORTH": "NRT", "SOUTH": "STH"}, ("SOUTH",))
    return Settings(
        home=home,
        key_file=key_file,
        config_file=config,
        deid_processes=1,
        batch_url=f"file://{tmp_path / 'out'}",
    )


async def _login(client: httpx.AsyncClient, token: str) -> str:
    client.cookies.clear()
    return await login(client, token)


async def _stow(client: httpx.AsyncClient, token: str, files: list[Path]) -> str:
    content_type, body = related_body([p.read_bytes() for p in files])
    headers = {**auth(token), "Content-Type": content_type}
    answer = await client.post("/dicomweb/studies", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    (study,) = {
        str(first(item["00081190"])).split("/studies/", 1)[1].split("/")[0]
        for item in answer.json()["00081199"]["Value"]
    }
    return study


async def _batch(client: httpx.AsyncClient, token: str, files: list[Path]) -> str:
    upload = [
        ("files", (f"{i}.dcm", p.read_bytes(), "application/dicom")) for i, p in enumerate(files)
    ]
    answer = await client.post("/api/v1/batches", files=upload, headers=auth(token))
    assert answer.status_code == 202, answer.text
    batch_id = str(answer.json()["batch_id"])
    assert (await finished(client, token, batch_id))["state"] == "complete"
    return batch_id


def _figure(page: str, name: str) -> str:
    found = re.search(rf"<dt>{name}</dt><dd>([^<]*)</dd>", page)
    assert found, name
    return found.group(1)


async def test_an_organisations_console_shows_nothing_of_another(
    browser: httpx.AsyncClient,  # noqa: F811 - the fixture
    home: Path,
    tmp_path: Path,
) -> None:
    store = token_store(home)
    token = {
        (role, org): store.create(role, f"{role}-{org or 'none'}", org=org)[1]
        for role in ("ingest", "read")
        for org in (*_ORGS, "")
    }
    files = write_demo_study(tmp_path / "in", patients=1, series_per_study=1, images_per_series=2)
    sent = {org: await _stow(browser, token["ingest", org], files) for org in _ORGS}
    assert sent["NORTH"] != sent["SOUTH"]
    batch = {org: await _batch(browser, token["ingest", org], files[:1]) for org in _ORGS}

    for org, other in (("NORTH", "SOUTH"), ("SOUTH", "NORTH")):
        theirs = {sent[other], batch[other]}
        await _login(browser, token["read", org])
        pages = {path: (await browser.get(path)).text for path in _PAGES}
        dashboard = pages["/console/"]
        assert f"Archive of {org}" in dashboard
        assert _figure(dashboard, "Studies") == "1" and _figure(dashboard, "Instances") == "2"
        assert "Quarantined inputs" not in dashboard and "Requests answered" not in dashboard
        assert sent[org] in pages["/console/studies"]
        await _login(browser, token["ingest", org])
        for path in ("/console/", "/console/batches", f"/console/batches/{batch[org]}"):
            pages[path] = (await browser.get(path)).text
            assert batch[org] in pages[path], (org, path)
        other_batch = await browser.get(f"/console/batches/{batch[other]}")
        assert other_batch.status_code == 404
        pages["other batch"] = other_batch.text
        for path, text in pages.items():
            assert not any(value in text for value in theirs), (org, path)

    await _login(browser, token["read", ""])  # bound to none: the whole archive, as before
    dashboard = (await browser.get("/console/")).text
    assert _figure(dashboard, "Studies") == "2" and "Quarantined inputs" in dashboard
    await _login(browser, token["ingest", ""])
    listing = (await browser.get("/console/batches")).text
    assert batch["NORTH"] in listing and batch["SOUTH"] in listing


async def test_a_bound_session_neither_sees_nor_releases_a_run_of_no_organisation(
    browser: httpx.AsyncClient,  # noqa: F811 - the fixture
    home: Path,
    tmp_path: Path,
) -> None:
    run = home / "quarantine" / "run-0123456789"  # no run.json: an older run, of none
    run.mkdir(parents=True)
    (run / "reasons.json").write_text('[{"file": "", "reason": "not DICOM"}]')
    store = token_store(home)
    north = store.create("ingest", "ingest-north", org="NORTH")[1]
    unbound = store.create("ingest", "ingest-none")[1]
    action = f"/console/quarantine/{run.name}/release"

    csrf = await _login(browser, north)
    assert "/console/quarantine" in (await browser.get("/console/")).text  # its own runs
    page = await browser.get("/console/quarantine")
    assert page.status_code == 200 and run.name not in page.text
    assert (await browser.post(action, data={"csrf": csrf})).status_code == 404
    assert (run / "reasons.json").is_file()

    csrf = await _login(browser, unbound)
    page = await browser.get("/console/quarantine")
    assert page.status_code == 200 and action in page.text
    assert (await browser.post(action, data={"csrf": csrf})).status_code == 303
