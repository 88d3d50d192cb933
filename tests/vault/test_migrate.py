"""Opening a vault without Alembic: the revision constant and the schema of a new vault."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from dicomveil.vault import Vault
from dicomveil.vault import db as vault_db
from tests.vault.conftest import SECRET


def _schema(path: Path) -> list[tuple[str, str, str, str | None]]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")
        return sorted(rows)


def _replay(path: Path, revision: str = "head") -> None:
    """Build a SQLite vault at ``path`` by replaying the Alembic revisions up to ``revision``."""
    from alembic import command

    engine = vault_db.make_engine(f"sqlite:///{path}", create=True)
    with vault_db.write_transaction(engine) as connection:
        command.upgrade(vault_db._alembic_config(connection), revision)
    engine.dispose()


def test_head_revision_is_alembics_head(tmp_path: Path) -> None:
    engine = vault_db.make_engine(f"sqlite:///{tmp_path / 'v.sqlite'}", create=True)
    with engine.connect() as connection:
        head = vault_db._head_revision(vault_db._alembic_config(connection))
    engine.dispose()
    assert head == vault_db.HEAD_REVISION


def test_new_vault_has_the_schema_alembic_builds(tmp_path: Path) -> None:
    """A new SQLite vault created from the schema equals one built by replaying revisions."""
    replayed = tmp_path / "replayed.sqlite"
    _replay(replayed)
    created = tmp_path / "created.sqlite"
    Vault.open(f"sqlite:///{created}", SECRET).close()
    assert _schema(created) == _schema(replayed)
    with sqlite3.connect(created) as connection:
        assert list(connection.execute("SELECT version_num FROM vault_alembic_version")) == [
            (vault_db.HEAD_REVISION,)
        ]


def test_opening_a_current_vault_does_not_import_alembic(tmp_path: Path) -> None:
    import subprocess

    url = f"sqlite:///{tmp_path / 'v.sqlite'}"
    code = (
        "import sys; from dicomveil.vault import Vault; "
        f"Vault.open({url!r}, {SECRET!r}).close(); "
        "sys.exit(1 if 'alembic' in sys.modules else 0)"
    )
    for _ in range(2):  # create, then reopen
        done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True)
        assert done.returncode == 0, done.stderr.decode()


def test_a_vault_at_the_first_revision_is_upgraded_on_open(tmp_path: Path) -> None:
    """An existing vault gains the newer tables when next opened, then records as usual."""
    from tests.vault.corpus import make_records

    path = tmp_path / "old.sqlite"
    _replay(path, "0001")
    with sqlite3.connect(path) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert "vault_frame_of_reference" not in tables
    records = make_records(1)
    with Vault.open(f"sqlite:///{path}", SECRET) as vault:
        assert vault.stats().revision == vault_db.HEAD_REVISION == "0002"
        vault.record(records, run_id="run-1")
    with Vault.open(f"sqlite:///{path}", SECRET) as vault:
        study = records[0].pseudonymous.study_instance_uid
        assert [m.pseudo_study_uid for m in vault.find(study=study)] == [study]
