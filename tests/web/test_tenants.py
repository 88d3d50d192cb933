"""Organisations (tenants) through the gateway: two hospitals send the same patient; each
one's read token is blind to the other's studies at every QIDO-RS level and WADO-RS
endpoint (404, never 403: no existence oracle), pseudonyms carry the organisation's prefix,
an organisation's own key gives unlinkable pseudonyms, and the audit log names the tenant."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from dicomveil.demo import write_demo_study
from dicomveil.keystore import create_key_file
from dicomveil.tokens import token_store
from dicomveil.web import Settings, create_app
from tests.web.conftest import auth
from tests.web.support import first, related_body

pytestmark = pytest.mark.anyio

_DICOM_JSON = {"Accept": "application/dicom+json"}


@pytest.fixture
def app(home: Path, key_file: Path, tmp_path: Path) -> Iterator[FastAPI]:
    create_key_file(tmp_path / "south.key")
    config = tmp_path / "dicomveil.toml"
    config.write_text(
        '[organisations.NORTH]\npseudonym_prefix = "NRT"\n\n'
        '[organisations.SOUTH]\nkey_file = "south.key"\n',
        encoding="utf-8",
    )
    application = create_app(Settings(home=home, key_file=key_file, config_file=config))
    try:
        yield application
    finally:
        application.state.services.close()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def org_tokens(home: Path) -> dict[str, str]:
    """Tokens by ``<role>:<org>`` (``""``: no organisation)."""
    store = token_store(home)
    found = {}
    for role in ("ingest", "read"):
        for org in ("NORTH", "SOUTH", ""):
            found[f"{role}:{org}"] = store.create(role, f"{role}-{org or 'none'}", org=org)[1]
    return found


async def _send(client: httpx.AsyncClient, token: str, files: list[Path]) -> list[list[str]]:
    content_type, body = related_body([p.read_bytes() for p in files])
    answer = await client.post(
        "/dicomweb/studies",
        content=body,
        headers={**auth(token), "Content-Type": content_type},
    )
    assert answer.status_code == 200, answer.text
    urls = [str(first(item["00081190"])) for item in answer.json()["00081199"]["Value"]]
    return [url.split("/dicomweb/", 1)[1].split("/") for url in urls]


@pytest.fixture
async def sent(
    client: httpx.AsyncClient, org_tokens: dict[str, str], tmp_path: Path
) -> dict[str, list[str]]:
    """The same patient's study (same MRN, same UIDs) sent by NORTH and by SOUTH: the path
    of one instance URL (``studies/S/series/E/instances/I``) of each."""
    files = write_demo_study(
        tmp_path / "originals", patients=1, series_per_study=1, images_per_series=2
    )
    return {
        org: (await _send(client, org_tokens[f"ingest:{org}"], files))[0]
        for org in ("NORTH", "SOUTH")
    }


async def _qido(client: httpx.AsyncClient, token: str, path: str) -> list[dict[str, object]]:
    answer = await client.get(f"/dicomweb/{path}", headers={**auth(token), **_DICOM_JSON})
    assert answer.status_code == 200, answer.text
    rows: list[dict[str, object]] = answer.json()
    return rows


def _studies_of(rows: list[dict[str, object]]) -> set[str]:
    return {str(first(row["0020000D"])) for row in rows}  # type: ignore[arg-type]


def _wado_paths(parts: list[str]) -> list[str]:
    study, series, instance = parts[1], parts[3], parts[5]
    one = f"studies/{study}/series/{series}/instances/{instance}"
    return [
        f"studies/{study}",
        f"studies/{study}/series/{series}",
        one,
        f"studies/{study}/metadata",
        f"studies/{study}/series/{series}/metadata",
        f"{one}/metadata",
        f"{one}/rendered",
        f"{one}/frames/1/rendered",
        f"{one}/thumbnail",
        f"studies/{study}/series/{series}/thumbnail",
        f"studies/{study}/thumbnail",
        f"{one}/frames/1",
        f"{one}/bulkdata/7FE00010",
    ]


async def test_each_read_token_is_blind_to_the_other_organisation(
    client: httpx.AsyncClient, org_tokens: dict[str, str], sent: dict[str, list[str]]
) -> None:
    own = {org: parts[1] for org, parts in sent.items()}
    assert own["NORTH"] != own["SOUTH"]
    for org, other in (("NORTH", "SOUTH"), ("SOUTH", "NORTH")):
        token = org_tokens[f"read:{org}"]
        for level in ("studies", "series", "instances"):
            assert _studies_of(await _qido(client, token, level)) == {own[org]}, (org, level)
        theirs = own[other]
        for path in (f"studies/{theirs}/series", f"studies/{theirs}/instances"):
            assert await _qido(client, token, path) == [], (org, path)
        matched = await _qido(client, token, f"studies?StudyInstanceUID={theirs}")
        assert matched == []
        for path in _wado_paths(sent[other]):
            answer = await client.get(f"/dicomweb/{path}", headers=auth(token))
            assert answer.status_code == 404, (org, path, answer.status_code)
        for path in _wado_paths(sent[org])[:6]:
            answer = await client.get(f"/dicomweb/{path}", headers=auth(token))
            assert answer.status_code == 200, (org, path, answer.status_code)
    everyone = _studies_of(await _qido(client, org_tokens["read:"], "studies"))
    assert everyone == set(own.values())  # a token bound to no organisation reads all


async def test_prefix_and_own_key_make_unlinkable_pseudonyms(
    client: httpx.AsyncClient, org_tokens: dict[str, str], sent: dict[str, list[str]]
) -> None:
    patients = {}
    for org in ("NORTH", "SOUTH"):
        (row,) = await _qido(client, org_tokens[f"read:{org}"], "studies")
        patients[org] = str(first(row["00100020"]))  # type: ignore[arg-type]
    assert patients["NORTH"].startswith("NRT-")
    assert patients["SOUTH"].startswith("SOUTH-")  # the default prefix is the code
    north_token = patients["NORTH"].split("-", 1)[1]
    south_token = patients["SOUTH"].split("-", 1)[1]
    assert north_token != south_token  # SOUTH's own key: the same MRN, another pseudonym
    assert sent["NORTH"][3] != sent["SOUTH"][3] and sent["NORTH"][5] != sent["SOUTH"][5]


async def test_the_audit_log_names_each_run_organisation(
    app: FastAPI, sent: dict[str, list[str]]
) -> None:
    runs = [e for e in app.state.services.audit.entries() if e.event == "deid.run.start"]
    assert sorted(str(e.details.get("organisation")) for e in runs) == ["NORTH", "SOUTH"]
    south_key = {
        e.details["pseudonym_key_id"] for e in runs if e.details["organisation"] == "SOUTH"
    }
    north_key = {
        e.details["pseudonym_key_id"] for e in runs if e.details["organisation"] == "NORTH"
    }
    assert south_key != north_key  # the run names the key that made its pseudonyms


async def test_the_console_studies_page_lists_only_the_organisations_studies(
    app: FastAPI, org_tokens: dict[str, str], sent: dict[str, list[str]]
) -> None:
    from tests.web.console.test_console import login

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as browser:
        await login(browser, org_tokens["read:NORTH"])
        page = await browser.get("/console/studies")
        assert page.status_code == 200
        assert sent["NORTH"][1] in page.text
        assert sent["SOUTH"][1] not in page.text
        theirs = await browser.get(f"/dicomweb/studies/{sent['SOUTH'][1]}/thumbnail")
        assert theirs.status_code == 404  # the page's thumbnails: scoped by the same cookie


async def test_another_sender_never_adds_to_an_organisations_study(
    app: FastAPI, client: httpx.AsyncClient, org_tokens: dict[str, str], tmp_path: Path
) -> None:
    """NORTH and a sender bound to no organisation share the server's key, so the same
    original study gets the same pseudonymous UIDs: the second sender is refused (409), and
    nothing of it is archived or indexed."""
    files = write_demo_study(tmp_path / "same", patients=1, series_per_study=1, images_per_series=1)
    await _send(client, org_tokens["ingest:NORTH"], files)
    services = app.state.services
    before = services.index.counts()
    objects = sorted(info.key for info in services.store.list())
    assert objects
    content_type, body = related_body([p.read_bytes() for p in files])
    answer = await client.post(
        "/dicomweb/studies",
        content=body,
        headers={**auth(org_tokens["ingest:"]), "Content-Type": content_type},
    )
    assert answer.status_code == 409, answer.text
    assert services.index.counts() == before
    assert sorted(info.key for info in services.store.list()) == objects
    (row,) = await _qido(client, org_tokens["read:NORTH"], "studies")
    assert str(first(row["00100020"])).startswith("NRT-")  # type: ignore[arg-type]


async def _finished(client: httpx.AsyncClient, token: str, batch_id: str) -> dict[str, object]:
    import anyio

    for _ in range(600):
        answer = await client.get(f"/api/v1/batches/{batch_id}", headers=auth(token))
        assert answer.status_code == 200, answer.text
        status: dict[str, object] = answer.json()
        if status["state"] in ("complete", "stopped", "failed"):
            return status
        await anyio.sleep(0.1)
    raise AssertionError("the batch did not finish")


async def test_batches_are_per_organisation(
    client: httpx.AsyncClient,
    org_tokens: dict[str, str],
    sent: dict[str, list[str]],
    home: Path,
    tmp_path: Path,
) -> None:
    """A batch made with SOUTH's token uses SOUTH's prefix and key (the patient gets the
    pseudonym SOUTH's STOW-RS gave it) and only SOUTH's (or an unbound) token sees it."""
    import pydicom

    files = write_demo_study(
        tmp_path / "originals", patients=1, series_per_study=1, images_per_series=2
    )  # the very files `sent` stored
    parts = [
        ("files", (f"{i}.dcm", p.read_bytes(), "application/dicom")) for i, p in enumerate(files)
    ]
    answer = await client.post(
        "/api/v1/batches", files=parts, headers=auth(org_tokens["ingest:SOUTH"])
    )
    assert answer.status_code == 202, answer.text
    batch_id = answer.json()["batch_id"]
    status = await _finished(client, org_tokens["ingest:SOUTH"], batch_id)
    assert status["state"] == "complete" and status["organization"] == "SOUTH"
    north = auth(org_tokens["ingest:NORTH"])
    assert (await client.get(f"/api/v1/batches/{batch_id}", headers=north)).status_code == 404
    manifest = f"/api/v1/batches/{batch_id}/manifest"
    assert (await client.get(manifest, headers=north)).status_code == 404
    assert (await client.get("/api/v1/batches", headers=north)).json() == []
    unbound = await client.get("/api/v1/batches", headers=auth(org_tokens["ingest:"]))
    assert [b["batch_id"] for b in unbound.json()] == [batch_id]
    outbox = home.with_name(home.name + "-outbox")
    written = list(outbox.rglob("*.dcm"))
    assert written
    (row,) = await _qido(client, org_tokens["read:SOUTH"], "studies")
    south_patient = str(first(row["00100020"]))  # type: ignore[arg-type]
    assert {str(pydicom.dcmread(p).PatientID) for p in written} == {south_patient}
