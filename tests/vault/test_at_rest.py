"""The embedded SQLite vault (nothing in clear at rest, file mode, WAL) and several processes."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest
from sqlalchemy import text

from dicomveil.audit import AuditLog
from dicomveil.errors import ConfigError, VaultError
from dicomveil.vault import Vault, default_vault_url, open_vault
from tests.vault.conftest import SECRET
from tests.vault.corpus import make_records, planted_values
from tests.vault.workers import deidentify_worker

AUDIT_SECRET = b"audit-secret-for-tests-0123456789"


def _bytes_at_rest(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists())


def test_no_original_value_in_the_database_files(tmp_path: Path) -> None:
    db = tmp_path / "vault.sqlite"
    records = make_records(patients=4, studies=2, series=2, instances=2)
    with Vault.open(f"sqlite:///{db}", SECRET) as vault:
        for start in range(0, len(records), 5):
            vault.record(records[start : start + 5], run_id="run-1")
        assert Path(f"{db}-wal").stat().st_size > 0  # the WAL holds data right now
        checks = [_bytes_at_rest(db)]
    checks.append(_bytes_at_rest(db))  # after the final checkpoint
    for data in checks:
        assert records[0].pseudonymous.sop_instance_uid.encode() in data  # the search works
        leaked = sorted(v for v in planted_values(records) if v.encode() in data)
        assert leaked == []


def test_database_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "vault.sqlite"
    with Vault.open(f"sqlite:///{db}", SECRET) as vault:
        with vault.engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA busy_timeout")).scalar_one() >= 10000
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_missing_vault_is_not_created_for_readers(tmp_path: Path) -> None:
    db = tmp_path / "vault.sqlite"
    with pytest.raises(VaultError, match="no vault"):
        Vault.open(f"sqlite:///{db}", SECRET, create=False)
    assert not db.exists()


def test_open_vault_uses_home_and_key_store(tmp_path: Path) -> None:
    env = {"DICOMVEIL_HOME": str(tmp_path)}
    assert default_vault_url(environ=env) == f"sqlite:///{tmp_path / 'vault.sqlite'}"
    with pytest.raises(ConfigError, match="vault key"):
        open_vault(environ=env, create=False)
    assert not (tmp_path / "vault.sqlite").exists()
    notices: list[str] = []
    with open_vault(environ=env, notice=notices.append) as vault:
        assert vault.url.endswith("vault.sqlite")
    assert (tmp_path / "keys" / "vault.key").exists() and notices
    with pytest.raises(ConfigError, match="not a valid"):
        Vault.open("not a url", SECRET)


def test_four_processes_record_and_audit_at_once(vault_url: str, tmp_path: Path) -> None:
    """Runs on PostgreSQL too (the ``vault_url`` fixture gives both backends)."""
    url = vault_url
    audit_dir = tmp_path / "audit"
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        jobs = [
            pool.apply_async(deidentify_worker, (url, SECRET, str(audit_dir), AUDIT_SECRET, w))
            for w in range(4)
        ]
        counts = [job.get(timeout=120) for job in jobs]
    with Vault.open(url, SECRET) as vault:
        stats = vault.stats()
        assert (stats.patients, stats.studies, stats.instances) == (9, 9, 4 * 12 + 3)
        every = [r for w in range(4) for r in make_records(2, 1, 2, 3, first_patient=10 + 2 * w)]
        assert len(vault.map_uids_back(r.pseudonymous.sop_instance_uid for r in every)) == 48
    result = AuditLog(audit_dir, AUDIT_SECRET).verify()
    assert result.ok, str(result)
    assert result.entries == sum(counts) == 4 * 15


def test_urls() -> None:
    from dicomveil.vault.db import make_engine, public_url

    engine = make_engine("postgresql://user:s3cret@127.0.0.1:1/vault", create=False)
    assert engine.url.drivername == "postgresql+psycopg"  # psycopg 3, no connection made
    engine.dispose()
    assert "s3cret" not in public_url("postgresql+psycopg://user:s3cret@db/vault")
