"""``dicomveil retention run``: expired archive studies, quarantined runs, stale spool folders go
(a dry run lists them and changes nothing), old audit entries are sealed into a segment and
``audit verify`` still verifies what is kept; every run is audited without PHI."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pydicom
import pytest

from dicomveil.audit import AuditEvent, AuditLog
from dicomveil.audit.seal import verify_segment
from dicomveil.cli.main import main
from tests.web.conftest import auth

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::UserWarning")]

_DAY = 86400


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "spool" not in p.parts and not p.name.endswith("-shm")
    }


def _index(home: Path) -> Path:
    return next(home.glob("index*.sqlite"), None) or next(home.rglob("*index*.sqlite"))


def _plant(home: Path) -> None:
    """A 40-day-old quarantine run holding an original, and a stale spool folder."""
    run = home / "quarantine" / "oldrun-0123456789"
    run.mkdir(parents=True)
    (run / "abc.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"Doe^Jane")
    (run / "reasons.json").write_text(json.dumps([{"file": "abc.dcm", "reason": "pixels"}]))
    old = time.time() - 40 * _DAY
    os.utime(run / "reasons.json", (old, old))
    stale = home / "spool" / "gateway-crashed"
    stale.mkdir(parents=True)
    (stale / "upload").write_bytes(b"Doe^Jane")
    os.utime(stale, (old, old))


async def test_retention_dry_run_then_run(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    archive: dict[str, list[str]],
    demo_files: list[Path],
    home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old_study, new_study = sorted(archive["studies"])
    with sqlite3.connect(_index(home)) as connection:
        connection.execute(
            "UPDATE index_study_received SET received_at = received_at - ? WHERE study_pk ="
            " (SELECT pk FROM index_studies WHERE study_instance_uid = ?)",
            (400 * _DAY, old_study),
        )
    _plant(home)
    config = tmp_path / "dicomveil.toml"
    config.write_text(
        "[retention]\narchive_days = 365\nvault = true\nquarantine_days = 30\n"
        "spool_hours = 24\naudit_days = 3650\n"
    )

    before = _tree(home)
    capsys.readouterr()
    assert main(["retention", "run", "--config", str(config), "--dry-run", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["archive"]["ids"] == [old_study]
    assert listed["archive"]["objects"] == len(demo_files) // 2
    assert listed["archive"]["oldest_days"] >= 400
    assert listed["archive"]["vault_rows"]["vault_study"] == 1
    assert listed["quarantine"]["ids"] == ["oldrun-0123456789"]
    assert listed["spool"]["items"] == 1
    after_dry = _tree(home)
    changed = {k for k in before if after_dry.get(k) != before[k]}
    assert changed <= {"audit/audit.jsonl", "audit/audit.head"}  # only the audit entry
    assert (home / "spool" / "gateway-crashed").is_dir()

    assert main(["retention", "run", "--config", str(config), "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["archive"]["rows"]["index_studies"] == 1
    assert done["archive"]["vault_rows"]["vault_study"] == 1
    assert not (home / "quarantine" / "oldrun-0123456789").exists()
    assert not (home / "spool" / "gateway-crashed").exists()

    read = auth(tokens["read"])
    found = await client.get("/dicomweb/studies", headers=read)
    assert {item["0020000D"]["Value"][0] for item in found.json()} == {new_study}
    assert (await client.get(f"/dicomweb/studies/{old_study}", headers=read)).status_code == 404
    reid = auth(tokens["reidentify"])
    for study, found_it in ((old_study, False), (new_study, True)):
        answer = await client.post(
            "/api/v1/reidentify", headers=reid, json={"study": study, "purpose": "retention"}
        )
        assert answer.status_code == 200 and answer.json()["found"] is found_it

    log = AuditLog.open(home, create=False)
    assert log.verify().ok
    runs = [e for e in log.entries() if e.event == "retention.run"]
    assert [e.details["dry_run"] for e in runs] == [True, False]
    ds = pydicom.dcmread(demo_files[0], stop_before_pixels=True)
    text = (home / "audit" / "audit.jsonl").read_text()
    for value in (str(ds.PatientName), str(ds.PatientID), "Doe^Jane"):
        assert value not in text


def _old_log(home: Path, days: int, count: int) -> AuditLog:
    """Write ``count`` entries dated ``days`` ago, then ``count`` entries dated now."""
    log = AuditLog.open(home)

    class Clock:
        moment = datetime.now(UTC) - timedelta(days=days)

        def now(self) -> datetime:
            return self.moment

    dated = AuditLog(log.directory, _secret(home), clock=Clock())
    for n in range(count):
        dated.append(AuditEvent("test.old", "tester", "success", {"n": n}))
    for n in range(count):
        log.append(AuditEvent("test.new", "tester", "success", {"n": n}))
    return log


def _secret(home: Path) -> bytes:
    from dicomveil.keystore import load_key

    return load_key("audit", home=home, create=False).secret


def test_audit_sealing_keeps_the_chain_verifiable(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = _old_log(home, days=100, count=5)
    config = tmp_path / "dicomveil.toml"
    export = tmp_path / "worm"
    config.write_text(f'[retention]\naudit_days = 30\naudit_export = "{export}"\n')

    assert main(["retention", "run", "--config", str(config), "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["audit"]["items"] == 5
    assert main(["retention", "run", "--config", str(config), "--json"]) == 0
    done = json.loads(capsys.readouterr().out)["audit"]
    assert done["items"] == 5 and done["first_seq"] == 1 and done["last_seq"] == 5

    kept = list(log.entries())
    assert kept[0].seq == 6 and {e.event for e in kept[:5]} == {"test.new"}
    assert log.verify().ok and log.verify().entries == len(kept)  # what is kept, verified
    assert main(["audit", "verify"]) == 0
    (segment,) = export.iterdir()
    assert verify_segment(log, segment).ok
    seal = kept[-1]
    assert seal.event == "retention.run" and seal.details["audit"]["segment"] == segment.name

    # Removing a kept entry from the start is still caught, so is a forged checkpoint.
    lines = log.path.read_bytes().splitlines(keepends=True)
    log.path.write_bytes(b"".join(lines[1:]))
    assert not log.verify().ok
    log.path.write_bytes(b"".join(lines))
    assert log.verify().ok
    checkpoint = log.directory / "audit.checkpoint"
    body = json.loads(checkpoint.read_bytes())
    checkpoint.write_text(json.dumps(body | {"seq": 6}))
    assert not log.verify().ok


async def test_many_expired_studies_go_in_chunks(
    archive: dict[str, list[str]],
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dicomveil.retention import stores

    monkeypatch.setattr(stores, "_CHUNK", 1)
    with sqlite3.connect(_index(home)) as connection:
        connection.execute("UPDATE index_study_received SET received_at = received_at - ?", (_DAY,))
    config = tmp_path / "dicomveil.toml"
    config.write_text("[retention]\narchive_days = 0.5\nvault = true\n")
    capsys.readouterr()
    assert main(["retention", "run", "--config", str(config), "--json"]) == 0
    done = json.loads(capsys.readouterr().out)["archive"]
    assert done["ids"] == sorted(archive["studies"])
    assert done["rows"]["index_studies"] == 2 and done["vault_rows"]["vault_study"] == 2
    assert not [p for p in (home / "archive").rglob("*") if p.is_file()]
