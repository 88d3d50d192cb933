"""``dicomveil erase``: a patient's vault records go, the patient cannot be re-identified, the
vault file holds no byte of the erased rows, and the erasure is audited without PHI."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pydicom
import pytest

from dicomveil.cli.main import main
from dicomveil.demo import write_demo_study

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "home"
    monkeypatch.setenv("DICOMVEIL_HOME", str(folder))
    for var in ("DICOMVEIL_KEY", "DICOMVEIL_VAULT_KEY", "DICOMVEIL_AUDIT_KEY"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(f"{var}_FILE", raising=False)
    monkeypatch.delenv("DICOMVEIL_VAULT_URL", raising=False)
    return folder


def _patients(folder: Path) -> dict[str, tuple[str, str, set[str]]]:
    """Original PatientID -> (name, issuer, original study UIDs)."""
    found: dict[str, tuple[str, str, set[str]]] = {}
    for path in folder.rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        entry = found.setdefault(
            ds.PatientID, (str(ds.PatientName), str(ds.get("IssuerOfPatientID", "")), set())
        )
        entry[2].add(ds.StudyInstanceUID)
    return found


def _reidentify(study: str, capsys: pytest.CaptureFixture[str]) -> str | None:
    capsys.readouterr()
    code = main(["reidentify", "--study", study, "--purpose", "check", "--json"])
    out = capsys.readouterr().out
    if code != 0:
        return None
    (match,) = json.loads(out)["studies"]
    return str(match["original"]["PatientID"])


def _files_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_erase_removes_every_vault_trace(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "pseudonym.key"
    key.write_text("erase-test-pseudonym-key-0123456789\n")
    write_demo_study(tmp_path / "in", patients=2, series_per_study=2, images_per_series=2)
    patients = _patients(tmp_path / "in")
    assert len(patients) == 2
    assert main(["deid", str(tmp_path / "in"), str(tmp_path / "out"), "--key-file", str(key)]) == 0
    studies = sorted(p.name for p in (tmp_path / "out").glob("*/*") if p.is_dir())
    owner = {study: _reidentify(study, capsys) for study in studies}
    gone_id = sorted(patients)[0]
    (gone_study,) = [s for s, pid in owner.items() if pid == gone_id]
    (kept_study,) = [s for s, pid in owner.items() if pid != gone_id]

    vault_file = home / "vault.sqlite"
    with sqlite3.connect(vault_file) as connection:
        (uid, sealed) = connection.execute(
            "SELECT pseudo_study_uid, sealed FROM vault_study WHERE pseudo_study_id = ?"
            " OR pseudo_study_uid = ?",
            (gone_study, gone_study),
        ).fetchone()
        instance_blobs = [
            row[0]
            for row in connection.execute(
                "SELECT sealed FROM vault_instance WHERE pseudo_study_uid = ?", (uid,)
            )
        ]
    assert instance_blobs

    # the dry run lists, deletes nothing
    capsys.readouterr()
    name, issuer, _ = patients[gone_id]
    base = ["erase", "--patient", gone_id, "--purpose", "GDPR Art. 17 request", "--json"]
    if issuer:
        base += ["--issuer", issuer]
    assert main([*base, "--dry-run"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["dry_run"] and listed["pseudo_study_uids"] == [uid]
    assert listed["rows"]["vault_instance"] == len(instance_blobs)
    assert _reidentify(gone_study, capsys) == gone_id

    assert main(base) == 0
    erased = json.loads(capsys.readouterr().out)
    assert erased["rows"]["vault_study"] == 1 and not erased["dry_run"]
    assert gone_id not in json.dumps(erased) and name not in json.dumps(erased)

    # the erased patient cannot be re-identified; the other still can
    assert _reidentify(gone_study, capsys) is None
    assert _reidentify(kept_study, capsys) == sorted(set(patients) - {gone_id})[0]
    # no byte of the erased rows is left in the vault file (or its WAL)
    data = b"".join(p.read_bytes() for p in home.glob("vault.sqlite*"))
    assert uid.encode() not in data
    for blob in [sealed, *instance_blobs]:
        assert bytes(blob)[:32] not in data
    # a second erasure finds nothing (exit 1)
    assert main(base) == 1
    # audited: pseudonymous ids and counts, never the original id or name
    log = _files_bytes(home / "audit") if (home / "audit").exists() else b""
    audit_text = log or b"".join(p.read_bytes() for p in home.rglob("*.jsonl"))
    assert b"patient.erase" in audit_text and uid.encode() in audit_text
    assert gone_id.encode() not in audit_text and name.encode() not in audit_text
    assert main(["audit", "verify"]) == 0


def test_unknown_vault_fails_without_creating_one(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["erase", "--patient", "MRN-1", "--purpose", "x"])
    assert code == 1
    captured = capsys.readouterr()
    assert "MRN-1" not in captured.err + captured.out and "Traceback" not in captured.err
    assert not (home / "vault.sqlite").exists()
