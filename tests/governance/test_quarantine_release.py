"""Releasing a quarantined run: ``deid`` quarantines images declaring burned-in text; once the
policy accepts them, ``quarantine release`` (CLI) or the console's Release (ingest sessions,
CSRF) puts them through the ingest service into the archive, audited as
``quarantine.release`` without PHI; before the fix they stay quarantined."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from fastapi import FastAPI

from dicomveil.audit import AuditLog
from dicomveil.cli.main import main
from dicomveil.demo import write_demo_study
from dicomveil.web.app import create_app
from dicomveil.web.settings import Settings
from tests.web.conftest import actor, auth

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::UserWarning")]


def _quarantined_run(tmp_path: Path, key_file: Path) -> list[str]:
    """Run ``deid`` on a demo study whose first 2 images declare burned-in text; return the
    PHI of those images."""
    files = write_demo_study(tmp_path / "in", patients=1, series_per_study=1, images_per_series=3)
    phi = []
    for path in sorted(files)[:2]:
        ds = pydicom.dcmread(path)
        ds.BurnedInAnnotation = "YES"
        ds.save_as(path)
        phi += [str(ds.PatientName), str(ds.PatientID)]
    argv = ["deid", str(tmp_path / "in"), str(tmp_path / "out"), "--key-file", str(key_file)]
    assert main([*argv, "-j", "1"]) == 1
    return phi


def _run_id(home: Path) -> str:
    (run,) = [p.name for p in (home / "quarantine").iterdir() if p.is_dir()]
    return run


def _config(tmp_path: Path, key_file: Path, allow: bool) -> Path:
    policy = tmp_path / f"policy-{allow}.toml"
    policy.write_text(f"allow_burned_in_annotation = {str(allow).lower()}\n")
    config = tmp_path / f"dicomveil-{allow}.toml"
    config.write_text(f'[server]\nkey_file = "{key_file}"\npolicy_file = "{policy}"\n')
    return config


def _releases(home: Path) -> list[dict[str, object]]:
    log = AuditLog.open(home, create=False)
    assert log.verify().ok
    return [
        {"actor": e.actor, "outcome": e.outcome, **e.details}
        for e in log.entries()
        if e.event == "quarantine.release"
    ]


def test_cli_release_after_the_policy_is_fixed(
    home: Path, tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    phi = _quarantined_run(tmp_path, key_file)
    run = _run_id(home)
    capsys.readouterr()

    refused = _config(tmp_path, key_file, allow=False)
    assert main(["quarantine", "release", run, "--config", str(refused), "--json"]) == 1
    first = json.loads(capsys.readouterr().out)
    assert first["submitted"] == 2 and first["released"] == 0
    assert "BurnedInAnnotation is YES" in " ".join(first["still_failing"])
    assert len(list((home / "quarantine" / run).glob("*.dcm"))) == 2

    fixed = _config(tmp_path, key_file, allow=True)
    assert main(["quarantine", "release", run, "--config", str(fixed), "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["released"] == 2 and done["removed"] is True
    assert not (home / "quarantine" / run).exists()
    (study,) = done["pseudo_study_uids"]
    objects = [p for p in (home / "archive").rglob("*") if p.is_file()]
    assert len(objects) == 2 and all(study.encode() in p.read_bytes() for p in objects)
    for obj in objects:
        assert not any(value.encode() in obj.read_bytes() for value in phi)

    outcomes = [(r["outcome"], r["released"]) for r in _releases(home)]
    assert outcomes == [("failure", 0), ("success", 2)]
    assert _releases(home)[0]["actor"].startswith("cli:")  # type: ignore[union-attr]
    text = (home / "audit" / "audit.jsonl").read_text()
    assert not any(value in text for value in phi)


@pytest.fixture
def fixed_app(home: Path, key_file: Path, tmp_path: Path) -> Iterator[FastAPI]:
    policy = tmp_path / "policy.toml"
    policy.write_text("allow_burned_in_annotation = true\n")
    application = create_app(Settings(home=home, key_file=key_file, policy_file=policy))
    try:
        yield application
    finally:
        application.state.services.close()


@pytest.fixture
async def browser(fixed_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=fixed_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        yield c


async def _login(client: httpx.AsyncClient, token: str) -> str:
    client.cookies.clear()
    assert (await client.post("/console/login", data={"token": token})).status_code == 303
    found = re.search(r'name="csrf" value="([^"]+)"', (await client.get("/console/")).text)
    assert found
    return found.group(1)


async def test_console_release_is_for_ingest_sessions(
    browser: httpx.AsyncClient,
    tokens: dict[str, str],
    home: Path,
    tmp_path: Path,
    key_file: Path,
) -> None:
    phi = _quarantined_run(tmp_path, key_file)
    run = _run_id(home)
    action = f"/console/quarantine/{run}/release"

    csrf = await _login(browser, tokens["admin"])
    page = (await browser.get("/console/quarantine")).text
    assert action not in page and f"/console/quarantine/{run}/delete" in page
    assert (await browser.post(action, data={"csrf": csrf})).status_code == 403
    csrf = await _login(browser, tokens["read"])
    assert (await browser.get("/console/quarantine")).status_code == 403
    assert (await browser.post(action, data={"csrf": csrf})).status_code == 403

    csrf = await _login(browser, tokens["ingest"])
    page = (await browser.get("/console/quarantine")).text
    assert action in page and "/delete" not in page
    assert (await browser.post(action, data={"csrf": "forged"})).status_code == 403
    assert (home / "quarantine" / run).is_dir()
    answer = await browser.post(action, data={"csrf": csrf})
    assert answer.status_code == 303, answer.text
    assert "Released 2/2" in (await browser.get(answer.headers["location"])).text
    assert not (home / "quarantine" / run).exists()

    (release,) = _releases(home)
    assert release["actor"] == actor(home, "ingest") and release["released"] == 2
    (study,) = release["pseudo_study_uids"]  # type: ignore[misc]
    found = await browser.get(f"/dicomweb/studies/{study}/instances", headers=auth(tokens["read"]))
    assert found.status_code == 200 and len(found.json()) == 2
    text = (home / "audit" / "audit.jsonl").read_text()
    assert not any(value in text for value in phi)
