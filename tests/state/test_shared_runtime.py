"""Two runtimes with separate state folders (as two hosts) sharing one ``--database``:
vault, index, audit chain and tokens are shared; nothing of it lands in either folder; the
tables this issue adds hold no PHI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import create_engine, inspect, text

from dicomveil.audit.sql import SqlAuditLog
from dicomveil.demo import write_demo_study
from dicomveil.pipeline.ingest import Origin
from dicomveil.runtime import Runtime
from dicomveil.settings import CoreSettings
from dicomveil.tokens import token_store
from dicomveil.tokens_sql import SqlTokenStore

PHI = "SHAREDSTATE^PLANTED"
PHI_ID = "MRN-PLANTED-4711"
ORIGIN = Origin(entry="dimse", actor="ae:MODALITY1", calling_ae="MODALITY1", peer="127.0.0.1")
KEYS = {
    "DICOMVEIL_KEY": "shared-state-test-pseudonym-key-0123456789",
    "DICOMVEIL_VAULT_KEY": "shared-state-test-vault-key-0123456789abcd",
    "DICOMVEIL_AUDIT_KEY": "shared-state-test-audit-key-0123456789abcd",
}


@pytest.fixture
def planted(tmp_path: Path) -> list[Path]:
    paths = write_demo_study(tmp_path / "in", patients=1, series_per_study=1, images_per_series=2)
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.PatientID = PHI, PHI_ID
        ds.save_as(path)
    return paths


def _dump(url: str, tables: list[str]) -> str:
    """Every value of ``tables`` as text (what a reader of the database sees)."""
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = [str(conn.execute(text(f"SELECT * FROM {t}")).all()) for t in tables]
    engine.dispose()
    return "\n".join(rows)


def test_two_hosts_share_vault_index_audit_and_tokens(
    shared_db: str, tmp_path: Path, planted: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DICOMVEIL_DATABASE_URL", raising=False)
    homes = [tmp_path / "host-a", tmp_path / "host-b"]
    a = CoreSettings.load(home=homes[0], environ={}, database_url=shared_db, deid_processes=1)
    b = CoreSettings.from_mapping({"home": str(homes[1]), "deid_processes": 1})
    b = CoreSettings.load(
        home=homes[1], environ={"DICOMVEIL_DATABASE_URL": shared_db}, deid_processes=1
    )
    assert a.database_url == b.database_url == shared_db
    with Runtime.open(a) as first, Runtime.open(b) as second:
        assert isinstance(first.audit, SqlAuditLog)
        (one,) = first.ingest.ingest(planted[:1], ORIGIN)
        (two,) = second.ingest.ingest(planted[1:], ORIGIN)
        assert one.ok and two.ok
        # One index: host B finds the study host A stored, and the reverse.
        study = one.study_uid
        assert study == two.study_uid  # one key: one pseudonym
        assert second.index.counts().instances == 2
        assert second.vault is not None and first.vault is not None
        assert first.vault.stats().instances == second.vault.stats().instances == 2
        result = second.audit.verify()
        assert result.ok and result.entries >= 2, str(result)

    # Tokens: created by one process (the CLI, host A's folder), honoured by host B's.
    env = {**os.environ, "DICOMVEIL_HOME": str(homes[0]), "DICOMVEIL_DATABASE_URL": shared_db}
    command = [sys.executable, "-m", "dicomveil", "tokens", "create", "--role", "read"]
    created = subprocess.run(
        [*command, "--name", "reader"], env=env, capture_output=True, text=True, check=True
    )
    secret = created.stdout.strip().splitlines()[-1]
    store = token_store(homes[1], shared_db)
    assert isinstance(store, SqlTokenStore)
    token = store.verify(secret)
    assert token is not None and token.name == "reader"
    revoke = [sys.executable, "-m", "dicomveil", "tokens", "revoke", "reader"]
    subprocess.run(revoke, env=env, capture_output=True, check=True)
    assert store.verify(secret) is None  # revoked on host A: refused on host B at once
    store.close()

    # Nothing shared was written under either state folder.
    for home in homes:
        names = {path.name for path in home.rglob("*")}
        assert not names & {"tokens.json", "audit.jsonl", "index.sqlite", "vault.sqlite"}
    # The tables added here hold no PHI, and the token only as its hash.
    added = _dump(shared_db, ["dicomveil_audit", "dicomveil_audit_head", "dicomveil_tokens"])
    for value in (PHI, PHI_ID, "SHAREDSTATE", secret):
        assert value not in added
    engine = create_engine(shared_db)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"dicomveil_audit", "dicomveil_tokens"} <= tables
    assert "studies" not in tables  # the vault's and the index's live in their own places
