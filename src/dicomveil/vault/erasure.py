"""Erasing one patient from the vault (GDPR Art. 17): every row of every study recorded for
the patient, found through the keyed blind index of the original patient identity.

The original id is never compared in clear: it is turned into its blind index under each
vault key held, and the study rows carrying one of those indexes are the patient's. Their
series, instances and frames of reference go with them. On SQLite the deletion runs with
``secure_delete`` on and the write-ahead log is checkpointed and truncated afterwards, so the
deleted rows' bytes do not linger in free pages or the WAL file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete, select, text, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from dicomveil.vault import db
from dicomveil.vault.schema import SEALED_TABLES, studies
from dicomveil.vault.sealing import patient_index
from dicomveil.vault.store import Vault

__all__ = ["Erasure", "erase_patient", "erase_studies"]


@dataclass(frozen=True, slots=True)
class Erasure:
    """What an erasure removed (or, in a dry run, would remove): pseudonymous ids and counts
    only, safe to print and to audit."""

    pseudo_patient_ids: tuple[str, ...]
    pseudo_study_uids: tuple[str, ...]
    rows: dict[str, int] = field(default_factory=dict)
    """Rows per vault table."""
    dry_run: bool = False

    @property
    def found(self) -> bool:
        """Whether the vault held anything for the patient."""
        return bool(self.pseudo_study_uids)


def _studies(connection: Connection, which: ColumnElement[bool]) -> list[tuple[str, str, str]]:
    """(pseudonymous study UID, pseudonym key id, pseudonymous patient id) of the studies."""
    query = select(
        studies.c.pseudo_study_uid, studies.c.pseudonym_key_id, studies.c.pseudo_patient_id
    ).where(which)
    return [(str(a), str(b), str(c)) for a, b, c in connection.execute(query)]


def erase_patient(
    vault: Vault, patient_id: str, issuer: str = "", *, dry_run: bool = False
) -> Erasure:
    """Delete every vault row of the patient ``patient_id`` (with ``issuer``); return what went.

    With ``dry_run`` nothing is deleted: the answer lists what would be.
    """
    indexes = [patient_index(key, patient_id, issuer) for key in vault.keyring.all_keys()]
    return _erase(vault, studies.c.patient_index.in_(indexes), "erasing a patient", dry_run)


def erase_studies(
    vault: Vault, pseudo_study_uids: Sequence[str], *, dry_run: bool = False
) -> Erasure:
    """Delete every vault row of the studies ``pseudo_study_uids`` (retention of the vault).

    Afterwards those studies cannot be re-identified. With ``dry_run`` nothing is deleted.
    """
    match = studies.c.pseudo_study_uid.in_(list(pseudo_study_uids))
    return _erase(vault, match, "erasing studies", dry_run)


def _erase(vault: Vault, which: ColumnElement[bool], operation: str, dry_run: bool) -> Erasure:
    """Delete (or count) the rows of the vault studies ``which`` selects, children first."""
    sqlite = vault.engine.dialect.name == "sqlite"
    with db.map_database_errors(operation), db.write_transaction(vault.engine) as conn:
        db.lock(conn)
        found = _studies(conn, which)
        pairs = sorted({(uid, kid) for uid, kid, _ in found})
        rows: dict[str, int] = {}
        if sqlite and not dry_run:
            conn.execute(text("PRAGMA secure_delete = ON"))
        for table in reversed(SEALED_TABLES):  # children first
            match = tuple_(table.c.pseudo_study_uid, table.c.pseudonym_key_id).in_(pairs)
            if not pairs:
                rows[table.name] = 0
            elif dry_run:
                rows[table.name] = len(conn.execute(select(table.c.id).where(match)).all())
            else:
                rows[table.name] = int(conn.execute(delete(table).where(match)).rowcount or 0)
    if sqlite and not dry_run and pairs:
        with vault.engine.connect() as connection:
            connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    return Erasure(
        pseudo_patient_ids=tuple(sorted({pid for _, _, pid in found})),
        pseudo_study_uids=tuple(sorted({uid for uid, _ in pairs})),
        rows=rows,
        dry_run=dry_run,
    )
