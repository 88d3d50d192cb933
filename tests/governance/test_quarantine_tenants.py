"""The quarantine is per organisation (tenant, issue #14): a batch sent with a token of
NORTH (own key, prefix NRT) or SOUTH (own key, prefix STH) quarantines its images declaring
burned-in text as that organisation's run. Once the policy accepts them:

- a console session of NORTH lists, releases and deletes NORTH's runs only; SOUTH's run is
  answered as absent (404) and stays on disk byte for byte;
- a release (by NORTH's session, or by a session bound to no organisation) de-identifies the
  run for its organisation: the patient pseudonym is the one a direct de-identification
  with that organisation's prefix and key gives, not the server key's;
- ``dicomveil quarantine list`` shows each run's organisation;
- no planted PHI is in any answer, the audit log or the server's log.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import pydicom
import pytest
from fastapi import FastAPI

from dicomveil.audit import AuditLog
from dicomveil.cli.main import main
from dicomveil.demo import write_demo_study
from dicomveil.engine.deidentify import deidentify
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.keystore import load_key
from dicomveil.profile.policy import load_policy
from dicomveil.tokens import token_store
from dicomveil.web.app import create_app
from dicomveil.web.settings import Settings
from tests.tenant_config import write_organisations
from tests.web.conftest import auth
from tests.web.support import first
from tests.web.test_batches import finished

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::UserWarning")]

_PREFIX = {"NORTH": "NRT", "SOUTH": "STH"}


def _config(tmp_path: Path) -> Path:
    return write_organisations(tmp_path, _PREFIX, tuple(_PREFIX))


def _policy(tmp_path: Path, allow: bool) -> Path:
    path = tmp_path / f"policy-{allow}.toml"
    path.write_text(f"allow_burned_in_annotation = {str(allow).lower()}\n")
    return path


def _app(home: Path, key_file: Path, tmp_path: Path, allow: bool) -> FastAPI:
    settings = Settings(
        home=home,
        key_file=key_file,
        config_file=tmp_path / "dicomveil.toml",
        policy_file=_policy(tmp_path, allow),
        deid_processes=1,
        batch_url=f"file://{tmp_path / 'out'}",
    )
    return create_app(settings)


@asynccontextmanager
async def _client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        yield c


def _originals(tmp_path: Path, org: str) -> tuple[list[Path], list[str]]:
    """Two images of one patient of ``org`` declaring burned-in text; their PHI."""
    files = write_demo_study(
        tmp_path / f"in-{org}", patients=1, series_per_study=1, images_per_series=2
    )
    name, mrn = f"QUARANTINE^{org}PATIENT", f"MRN-{org}-735911"
    for path in files:
        ds = pydicom.dcmread(path)
        ds.BurnedInAnnotation = "YES"
        ds.PatientName, ds.PatientID = name, mrn
        ds.save_as(path)
    return files, [name, mrn, f"{org}PATIENT"]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


async def _login(client: httpx.AsyncClient, token: str) -> str:
    client.cookies.clear()
    assert (await client.post("/console/login", data={"token": token})).status_code == 303
    page = (await client.get("/console/")).text
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def _direct_pseudonym(original: Path, policy: Path, prefix: str, secret: bytes) -> str:
    """The Patient ID a direct de-identification of ``original`` gives (prefix, key)."""
    ds = pydicom.dcmread(original)
    deidentify(ds, replace(load_policy(policy), organization=prefix), PseudonymKeys(secret))
    return str(ds.PatientID)


async def _archived_patients(client: httpx.AsyncClient, token: str) -> set[str]:
    answer = await client.get("/dicomweb/studies", headers=auth(token))
    assert answer.status_code == 200, answer.text
    return {str(first(study["00100020"])) for study in answer.json()}


async def test_a_quarantined_run_is_its_organisations(
    home: Path,
    key_file: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _config(tmp_path)
    store = token_store(home)
    token = {
        (role, org): store.create(role, f"{role}-{org or 'none'}", org=org or None)[1]
        for role in ("ingest", "read", "admin")
        for org in (*_PREFIX, "")
    }
    sent = {org: _originals(tmp_path, org) for org in _PREFIX}
    phi = [value for _files, values in sent.values() for value in values]

    app = _app(home, key_file, tmp_path, allow=False)  # burned-in text refused: quarantined
    run: dict[str, str] = {}
    try:
        async with _client(app) as client:
            for org, (files, _) in sent.items():
                upload = [("files", (f"{i}.dcm", p.read_bytes())) for i, p in enumerate(files)]
                answer = await client.post(
                    "/api/v1/batches", files=upload, headers=auth(token["ingest", org])
                )
                assert answer.status_code == 202, answer.text
                run[org] = answer.json()["batch_id"]
                status = await finished(client, token["ingest", org], run[org])
                assert status["inputs"]["failed"] == 2, status
    finally:
        app.state.services.close()
    quarantine = home / "quarantine"
    for org in _PREFIX:
        assert json.loads((quarantine / run[org] / "run.json").read_text()) == {"organisation": org}

    assert main(["quarantine", "list"]) == 0  # the CLI listing: an org column
    listing = capsys.readouterr().out
    assert "ORG" in listing.splitlines()[0]
    for org in _PREFIX:
        (line,) = [line for line in listing.splitlines() if run[org] in line]
        assert line.split()[1] == org
    assert main(["quarantine", "list", "--json"]) == 0
    listed = {r["run_id"]: r["organisation"] for r in json.loads(capsys.readouterr().out)}
    assert listed == {run[org]: org for org in _PREFIX}

    answers: list[str] = [listing]
    policy = _policy(tmp_path, allow=True)
    app = _app(home, key_file, tmp_path, allow=True)
    try:
        async with _client(app) as client:
            south = _snapshot(quarantine / run["SOUTH"])
            csrf = await _login(client, token["ingest", "NORTH"])
            page = await client.get("/console/quarantine")
            assert page.status_code == 200
            assert run["NORTH"] in page.text and run["SOUTH"] not in page.text
            refused = await client.post(
                f"/console/quarantine/{run['SOUTH']}/release", data={"csrf": csrf}
            )
            assert refused.status_code == 404
            csrf_admin = await _login(client, token["admin", "NORTH"])
            page_admin = await client.get("/console/quarantine")
            assert run["NORTH"] in page_admin.text and run["SOUTH"] not in page_admin.text
            deleted = await client.post(
                f"/console/quarantine/{run['SOUTH']}/delete", data={"csrf": csrf_admin}
            )
            assert deleted.status_code == 404
            assert _snapshot(quarantine / run["SOUTH"]) == south  # nothing changed on disk
            answers += [page.text, refused.text, page_admin.text, deleted.text]

            csrf = await _login(client, token["ingest", "NORTH"])  # its own run: released
            released = await client.post(
                f"/console/quarantine/{run['NORTH']}/release", data={"csrf": csrf}
            )
            assert released.status_code == 303, released.text
            assert not (quarantine / run["NORTH"]).exists()
            csrf = await _login(client, token["ingest", ""])  # no organisation: SOUTH's run
            assert run["SOUTH"] in (await client.get("/console/quarantine")).text
            released = await client.post(
                f"/console/quarantine/{run['SOUTH']}/release", data={"csrf": csrf}
            )
            assert released.status_code == 303, released.text
            assert not (quarantine / run["SOUTH"]).exists()

            server = load_key("pseudonym", key_file=key_file).secret
            for org, prefix in _PREFIX.items():
                own = load_key("pseudonym", key_file=tmp_path / f"{org.lower()}.key").secret
                original = sent[org][0][0]
                expected = _direct_pseudonym(original, policy, prefix, own)
                assert expected.startswith(f"{prefix}-")
                assert expected != _direct_pseudonym(original, policy, prefix, server)
                assert await _archived_patients(client, token["read", org]) == {expected}
            await _login(client, token["admin", ""])
            audit_page = await client.get("/console/audit")
            assert audit_page.status_code == 200 and "quarantine.release" in audit_page.text
            answers.append(audit_page.text)
    finally:
        app.state.services.close()

    log = AuditLog.open(home, create=False)
    assert log.verify().ok
    releases = [e.details for e in log.entries() if e.event == "quarantine.release"]
    assert sorted(str(r["organisation"]) for r in releases) == sorted(_PREFIX)
    logged = (home / "audit" / "audit.jsonl").read_text() + caplog.text
    for text in (*answers, logged):
        assert not any(value in text for value in phi)


def test_cli_release_is_for_the_runs_organisation(
    home: Path, key_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``quarantine release`` de-identifies a NORTH run with NORTH's prefix and key; with
    settings that do not declare NORTH it refuses (exit 2, nothing released) rather than
    file NORTH's patients under the server's key."""
    from dicomveil.pipeline.outcome import FileOutcome
    from dicomveil.pipeline.quarantine import quarantine_run

    config = _config(tmp_path)
    files, phi = _originals(tmp_path, "NORTH")
    run = home / "quarantine" / "cli-run-0001"
    failures = [FileOutcome(p, "failed", reason="burned-in text") for p in files]
    quarantine_run(failures, run, organisation="NORTH")
    policy = _policy(tmp_path, allow=True)
    bare = tmp_path / "bare.toml"
    bare.write_text(f'[server]\nkey_file = "{key_file}"\npolicy_file = "{policy}"\n')
    before = _snapshot(run)

    assert main(["quarantine", "release", run.name, "--config", str(bare)]) == 2
    refused = capsys.readouterr()
    assert "NORTH" in refused.err and "Traceback" not in refused.err
    assert _snapshot(run) == before

    with_orgs = tmp_path / "with-orgs.toml"
    with_orgs.write_text(bare.read_text() + "\n" + config.read_text())
    assert main(["quarantine", "release", run.name, "--config", str(with_orgs), "--json"]) == 0
    done = capsys.readouterr()
    assert json.loads(done.out)["released"] == 2 and not run.exists()
    own = load_key("pseudonym", key_file=tmp_path / "north.key").secret
    expected = _direct_pseudonym(files[0], policy, "NRT", own)
    archived = [pydicom.dcmread(p) for p in (home / "archive").rglob("*.dcm")]
    assert len(archived) == 2 and {str(ds.PatientID) for ds in archived} == {expected}
    text = done.out + done.err + refused.out + (home / "audit" / "audit.jsonl").read_text()
    assert not any(value in text for value in phi)
