"""Retention per organisation, on the embedded SQLite stores and on a shared PostgreSQL
database: two organisations' studies of the same age, a long default archive period and a
short one for NORTH → only NORTH's study goes (archive objects, index rows, vault rows); a
dry run lists it and removes nothing. With ``--database`` the run's audit entry lands in the
shared SQL chain, which ``audit verify --database`` verifies."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from dicomveil.audit import AuditLog
from dicomveil.cli.main import main
from dicomveil.demo import write_demo_study
from dicomveil.keystore import create_key_file
from dicomveil.settings import CoreSettings
from dicomveil.tokens import token_store
from dicomveil.web import Settings
from tests.conftest import create_postgres_database
from tests.web.conftest import auth
from tests.web.support import first, related_body

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::UserWarning")]

_DAY = 86400
_ORGS = (
    '[organisations.NORTH]\npseudonym_prefix = "NRT"\n\n'
    '[organisations.SOUTH]\nkey_file = "south.key"\n'
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server)])
def database(request: pytest.FixtureRequest) -> str | None:
    """``None``: each store embedded under the state folder; else a shared PostgreSQL one."""
    if request.param == "sqlite":
        return None
    return create_postgres_database(request.getfixturevalue("postgres_url"), "retention")


@pytest.fixture
def settings(home: Path, key_file: Path, tmp_path: Path, database: str | None) -> Settings:
    """The gateway's settings (its app and client: the gateway fixtures): two organisations."""
    create_key_file(tmp_path / "south.key")  # the same original gets other UIDs in SOUTH
    config = tmp_path / "server.toml"
    config.write_text(_ORGS, encoding="utf-8")
    return Settings(home=home, key_file=key_file, config_file=config, database_url=database)


async def _send(client: httpx.AsyncClient, token: str, files: list[Path]) -> str:
    """Store ``files`` with ``token``; the pseudonymous study UID."""
    content_type, body = related_body([p.read_bytes() for p in files])
    answer = await client.post(
        "/dicomweb/studies", content=body, headers={**auth(token), "Content-Type": content_type}
    )
    assert answer.status_code == 200, answer.text
    (study,) = {
        str(first(item["00081190"])).split("/studies/", 1)[1].split("/")[0]
        for item in answer.json()["00081199"]["Value"]
    }
    return study


def _archived(home: Path) -> int:
    return sum(1 for p in (home / "archive").rglob("*") if p.is_file())


async def test_only_the_short_period_organisations_study_goes(
    client: httpx.AsyncClient,
    home: Path,
    tmp_path: Path,
    database: str | None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = token_store(home, database)
    token = {
        name: store.create(role, name, org=org)[1]
        for name, role, org in (
            ("ingest-north", "ingest", "NORTH"),
            ("ingest-south", "ingest", "SOUTH"),
            ("read", "read", ""),
            ("reid", "reidentify", ""),
        )
    }
    files = write_demo_study(tmp_path / "in", patients=1, series_per_study=1, images_per_series=2)
    north = await _send(client, token["ingest-north"], files)
    south = await _send(client, token["ingest-south"], files)
    engine = create_engine(CoreSettings(home=home, database_url=database).index_database)
    with engine.begin() as connection:  # both studies last received 40 days ago
        connection.execute(
            text("UPDATE index_study_received SET received_at = received_at - :age"),
            {"age": 40 * _DAY},
        )
    engine.dispose()
    config = tmp_path / "retention.toml"
    config.write_text(
        "[retention]\narchive_days = 3650\nvault = true\naudit_days = 1\n\n"
        "[retention.organisations.NORTH]\narchive_days = 30\n"
    )
    command = ["retention", "run", "--config", str(config), "--json"]
    command += ["--database", database] if database else []

    capsys.readouterr()
    assert main([*command, "--dry-run"]) == 0
    listed = json.loads(capsys.readouterr().out)["archive"]
    assert listed["ids"] == [north] and listed["objects"] == 2
    assert listed["rows"]["index_studies"] == 1 and listed["vault_rows"]["vault_study"] == 1
    assert _archived(home) == 4

    async def state() -> tuple[set[str], dict[str, bool]]:
        found = await client.get("/dicomweb/studies", headers=auth(token["read"]))
        indexed = {str(first(item["0020000D"])) for item in found.json()}
        vault = {}
        for study in (north, south):
            answer = await client.post(
                "/api/v1/reidentify",
                headers=auth(token["reid"]),
                json={"study": study, "purpose": "retention test"},
            )
            vault[study] = answer.json()["found"]
        return indexed, vault

    assert await state() == ({north, south}, {north: True, south: True})  # dry: nothing gone

    assert main(command) == 0
    report = json.loads(capsys.readouterr().out)
    done = report["archive"]
    assert done["ids"] == [north] and done["rows"]["index_studies"] == 1
    # Nothing is a day old; a shared chain is never sealed (that would rewrite the file log).
    assert report["audit"]["items"] == 0
    assert ("not_sealed" in report["audit"]) is (database is not None)
    assert await state() == ({south}, {north: False, south: True})
    assert _archived(home) == 2
    wado = await client.get(f"/dicomweb/studies/{south}", headers=auth(token["read"]))
    assert wado.status_code == 200

    log = AuditLog.open(home, create=False, database_url=database)
    try:
        runs = [e.details for e in log.entries() if e.event == "retention.run"]
        assert [(run["dry_run"], run["archive"]["ids"]) for run in runs] == [
            (True, [north]),
            (False, [north]),
        ]
    finally:
        log.close()
    if database:  # the shared chain holds the entries, no local file does
        assert not (home / "audit" / "audit.jsonl").exists()
        assert main(["audit", "verify", "--database", database]) == 0
        assert "verified" in capsys.readouterr().out.lower()
