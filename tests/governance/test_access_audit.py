"""Complete audit (#14): refused requests, re-identification attempts and archive reads.

Every entry names the token by id, its role, the client's address and the outcome; none
holds the path's query string or anything a client typed (PHI is planted in queries).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from dicomveil.audit import AuditEntry, AuditLog
from dicomveil.tokens import token_store
from tests.web.conftest import auth

pytestmark = pytest.mark.anyio

PLANTED = "Planted^Patient^Name"


def _entries(home: Path) -> list[AuditEntry]:
    return list(AuditLog.open(home, create=False).entries())


def _log_bytes(home: Path) -> bytes:
    return (home / "audit" / "audit.jsonl").read_bytes()


def _token_id(home: Path, role: str) -> str:
    (token,) = token_store(home).find(f"test-{role}")
    return token.id


async def test_refused_requests_are_audited(
    client: httpx.AsyncClient, tokens: dict[str, str], home: Path
) -> None:
    query = {"PatientName": PLANTED}
    assert (await client.get("/dicomweb/studies", params=query)).status_code == 401
    bad = auth("dvt_not-a-token")
    assert (await client.get("/dicomweb/studies", params=query, headers=bad)).status_code == 401
    admin = auth(tokens["admin"])
    assert (await client.get("/dicomweb/studies", params=query, headers=admin)).status_code == 403
    stow = await client.post("/dicomweb/studies", headers=auth(tokens["read"]), content=b"x")
    assert stow.status_code == 403
    denied = [e for e in _entries(home) if e.event == "access.denied"]
    assert [(e.actor, e.details["status"], e.details["reason"]) for e in denied] == [
        ("<unknown>", 401, "no bearer token"),
        ("<unknown>", 401, "unknown, revoked or expired token"),
        (f"token:{_token_id(home, 'admin')}", 403, "role"),
        (f"token:{_token_id(home, 'read')}", 403, "role"),
    ]
    assert [e.details.get("role") for e in denied] == [None, None, "admin", "read"]
    assert [e.details["needed"] for e in denied] == ["read", "read", "read", "ingest"]
    assert {e.details["client"] for e in denied} == {"127.0.0.1"}
    assert {e.outcome for e in denied} == {"denied"}
    assert denied[0].details["action"] == "GET /dicomweb/studies"
    assert denied[3].details["action"] == "POST /dicomweb/studies"
    assert PLANTED.encode() not in _log_bytes(home)
    assert b"dvt_not-a-token" not in _log_bytes(home)


async def test_reidentification_attempts_are_audited_refused_or_not(
    client: httpx.AsyncClient, tokens: dict[str, str], home: Path
) -> None:
    body = {"purpose": "audit test", "patient": PLANTED}
    for role, status in (("read", 403), ("ingest", 403), ("admin", 403), ("reidentify", 200)):
        answer = await client.post("/api/v1/reidentify", json=body, headers=auth(tokens[role]))
        assert answer.status_code == status, (role, answer.text)
    assert (await client.post("/api/v1/reidentify", json=body)).status_code == 401
    attempts = [e for e in _entries(home) if e.event == "reid.request"]
    expected = [("read", "denied"), ("ingest", "denied"), ("admin", "denied")]
    expected += [("reidentify", "success")]
    assert [(e.details["role"], e.outcome) for e in attempts[:4]] == expected
    assert [e.actor for e in attempts[:4]] == [
        f"token:{_token_id(home, role)}" for role, _ in expected
    ]
    assert attempts[4].actor == "<unknown>" and attempts[4].outcome == "denied"
    assert {e.details["client"] for e in attempts} == {"127.0.0.1"}
    refused = [e for e in _entries(home) if e.event == "access.denied"]
    assert {e.details["needed"] for e in refused} == {"reidentify"}
    assert len(refused) == 4
    assert PLANTED.encode() not in _log_bytes(home)


async def test_archive_reads_are_audited_per_request_at_study_level(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    home: Path,
    archive: dict[str, list[str]],
) -> None:
    reader = auth(tokens["read"])
    before = len(_entries(home))
    found = await client.get("/dicomweb/studies", headers=reader)
    assert found.status_code == 200
    nothing = await client.get("/dicomweb/studies", params={"PatientName": PLANTED}, headers=reader)
    assert nothing.status_code in (200, 204)
    study = archive["studies"][0]
    assert (await client.get(f"/dicomweb/studies/{study}/metadata", headers=reader)).is_success
    frames = "/dicomweb" + archive["urls"][0].split("/dicomweb", 1)[1] + "/frames/1"
    assert (await client.get(frames, headers=reader)).is_success
    entries = _entries(home)[before:]
    assert [e.event for e in entries] == [
        "archive.query",
        "archive.query",
        "archive.read",
        "archive.read",
    ]
    reader_actor = f"token:{_token_id(home, 'read')}"
    assert {e.actor for e in entries} == {reader_actor}
    assert {e.details["role"] for e in entries} == {"read"}
    everything, none, metadata, frame = entries
    assert everything.details["pseudo_study_uids"] == archive["studies"]
    assert everything.details["matches"] == len(archive["studies"])
    assert none.details["matches"] == 0 and none.details["pseudo_study_uids"] == []
    assert metadata.details["pseudo_study_uids"] == [study]
    assert metadata.details["action"] == "GET /dicomweb/studies/{study}/metadata"
    frame_study = archive["urls"][0].split("/studies/", 1)[1].split("/")[0]
    assert frame.details["pseudo_study_uids"] == [frame_study]
    assert PLANTED.encode() not in _log_bytes(home)
    assert AuditLog.open(home, create=False).verify().ok


async def test_atna_export_names_the_studies_read(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    home: Path,
    archive: dict[str, list[str]],
) -> None:
    from dicomveil.audit import to_atna

    await client.get("/dicomweb/studies", headers=auth(tokens["read"]))
    (query,) = [e for e in _entries(home) if e.event == "archive.query"]
    message = to_atna(query, source_id="test")
    assert 'csd-code="110112"' in message
    for study in archive["studies"]:
        assert f'ParticipantObjectID="{study}"' in message


def test_audit_key_beside_the_log_is_flagged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new install keeps its audit key outside the state folder (not flagged); an install
    whose clear key file is in the state folder keeps using it (nothing moved) and is
    flagged; a key from elsewhere (a file outside, or the environment) is not."""
    home = tmp_path / "home"
    for name in ("DICOMVEIL_AUDIT_KEY", "DICOMVEIL_AUDIT_KEY_FILE", "DICOMVEIL_KEYS_HOME"):
        monkeypatch.delenv(name, raising=False)
    assert not AuditLog.open(home).key_beside_log
    assert (tmp_path / "home.keys" / "audit.key").is_file()
    assert not (home / "keys" / "audit.key").exists()
    legacy = tmp_path / "legacy"
    (legacy / "keys").mkdir(parents=True)
    (legacy / "keys" / "audit.key").write_text("legacy-audit-key-0123456789abcdef\n")
    kept = AuditLog.open(legacy)
    assert kept.key_beside_log and not (tmp_path / "legacy.keys").exists()
    outside = tmp_path / "vault-host" / "audit.key"
    outside.parent.mkdir()
    outside.write_text((legacy / "keys" / "audit.key").read_text())
    monkeypatch.setenv("DICOMVEIL_AUDIT_KEY_FILE", str(outside))
    assert not AuditLog.open(legacy).key_beside_log
    monkeypatch.delenv("DICOMVEIL_AUDIT_KEY_FILE")
    monkeypatch.setenv("DICOMVEIL_AUDIT_KEY", "x" * 32)
    assert not AuditLog.open(legacy).key_beside_log


def test_gateway_warns_when_the_audit_key_is_beside_the_log(
    home: Path, key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from dicomveil.web import Settings, create_app

    with caplog.at_level("WARNING", logger="dicomveil.web"):
        app = create_app(Settings(home=home, key_file=key_file))
    app.state.services.close()
    assert not any("audit key is a clear file" in r.getMessage() for r in caplog.records)
    old = home.with_name("old-install")
    (old / "keys").mkdir(parents=True)
    (old / "keys" / "audit.key").write_text("legacy-audit-key-0123456789abcdef\n")
    with caplog.at_level("WARNING", logger="dicomveil.web"):
        app = create_app(Settings(home=old, key_file=key_file))
    app.state.services.close()
    assert any("audit key is a clear file" in r.getMessage() for r in caplog.records)


async def test_console_pages_refused_to_a_session_are_audited(
    app: object, tokens: dict[str, str], home: Path
) -> None:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as browser:
        login = await browser.post("/console/login", data={"token": tokens["read"]})
        assert login.status_code == 303
        assert (await browser.get("/console/tokens")).status_code == 403
    (denied,) = [e for e in _entries(home) if e.event == "access.denied"]
    assert denied.actor == f"token:{_token_id(home, 'read')}"
    assert denied.details["action"] == "GET /console/tokens"
    assert denied.details["role"] == "read" and denied.details["status"] == 403
