"""Vault key rotation: re-seal every row under a new vault key while readers keep working.

How it runs
-----------
1. The new key is added to ``vault_key`` as *pending*, and each of the two keys is stored
   wrapped (sealed) under the other. From that moment every process holding either key can
   open rows sealed under both, and writers seal new rows under the pending key.
2. Rows still sealed under the old key are re-sealed (and their blind index recomputed) in
   batches, one short transaction per batch, so readers and writers are never blocked for
   long.
3. In one last transaction any straggler is re-sealed, the old key is deleted from the table
   and the new key becomes *active*; the wrapped copies disappear with it. From then on the
   old key opens nothing.

An interrupted rotation resumes when started again with the same two keys (the new key can
also be recovered from the vault with the old key while the rotation is pending).

This is about the *vault* key only. Rotating the *pseudonym* key does not touch the vault:
pseudonyms made after it are new, and older rows stay resolvable by their own key id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.engine import Connection

from dicomveil.errors import VaultError
from dicomveil.vault import db
from dicomveil.vault.crypto import VaultKey
from dicomveil.vault.keyring import PENDING
from dicomveil.vault.models import RotationReport
from dicomveil.vault.schema import SEALED_TABLES, studies
from dicomveil.vault.sealing import open_row, patient_index, seal_row
from dicomveil.vault.store import Vault

__all__ = ["pending_key_id", "rotate_vault_key"]


def pending_key_id(vault: Vault) -> str | None:
    """Return the id of the key an unfinished rotation is moving to, if any."""
    with db.map_database_errors("reading the vault keys"), vault.engine.connect() as connection:
        vault.keyring.refresh(connection)
    return next((k for k, state in vault.keyring.states.items() if state == PENDING), None)


def rotate_vault_key(
    vault: Vault,
    old: bytes,
    new: bytes,
    *,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> RotationReport:
    """Re-seal every value of ``vault`` under the ``new`` vault secret.

    Parameters
    ----------
    vault:
        An open vault (opened with ``old``, or with ``new`` when resuming).
    old, new:
        The current and the next vault secret.
    batch_size:
        Rows re-sealed per transaction.
    progress:
        Called with the running count of re-sealed rows after each batch.

    Raises
    ------
    VaultError
        ``old`` is not the vault's active key, another rotation is pending, or ``new``
        equals ``old``.
    """
    old_key, new_key = VaultKey.from_secret(old), VaultKey.from_secret(new)
    if old_key.id == new_key.id:
        raise VaultError("the new vault key is the same as the old one")
    engine = vault.engine
    with db.map_database_errors("starting the key rotation"):
        with db.write_transaction(engine) as connection:
            db.lock(connection)
            vault.keyring.refresh(connection)
            resumed = _start(vault, connection, old_key, new_key)
            vault.keyring.refresh(connection)
    resealed = 0
    with db.map_database_errors("re-sealing rows"):
        for table in SEALED_TABLES:
            while True:
                with db.write_transaction(engine) as connection:
                    db.lock(connection, shared=True)
                    count = _reseal_batch(connection, table, old_key, new_key, batch_size)
                if not count:
                    break
                resealed += count
                if progress is not None:
                    progress(resealed)
    with db.map_database_errors("finishing the key rotation"):
        with db.write_transaction(engine) as connection:
            db.lock(connection)
            for table in SEALED_TABLES:
                resealed += _reseal_batch(connection, table, old_key, new_key, None)
            vault.keyring.finish_rotation(connection, old_key, new_key)
            vault.keyring.refresh(connection)
    return RotationReport(old_key.id, new_key.id, resealed, resumed)


def _start(vault: Vault, connection: Connection, old: VaultKey, new: VaultKey) -> bool:
    """Register the rotation (or recognise it as already started); return whether resumed."""
    states = vault.keyring.states
    if states.get(old.id) != "active":
        raise VaultError(f"vault key {old.id} is not this vault's active key")
    pending = pending_key_id(vault)
    if pending is None:
        vault.keyring.begin_rotation(connection, old, new)
        return False
    if pending != new.id:
        raise VaultError(f"a rotation to vault key {pending} is in progress; finish it first")
    return True


def _reseal_batch(
    connection: Connection, table: Table, old: VaultKey, new: VaultKey, limit: int | None
) -> int:
    """Re-seal up to ``limit`` rows of ``table`` still under ``old``; return how many."""
    query = select(table).where(table.c.vault_key_id == old.id).order_by(table.c.id)
    if limit is not None:
        query = query.limit(limit)
    changes: list[dict[str, Any]] = []
    for row in connection.execute(query).mappings():
        original = open_row(old, table, row)
        change: dict[str, Any] = {
            "row_id": row["id"],
            "new_sealed": seal_row(new, table, row, original),
        }
        if table is studies:
            change["new_index"] = patient_index(
                new, original["PatientID"], original["IssuerOfPatientID"]
            )
        changes.append(change)
    if not changes:
        return 0
    values: dict[str, Any] = {"sealed": bindparam("new_sealed"), "vault_key_id": new.id}
    if table is studies:
        values["patient_index"] = bindparam("new_index")
    statement = (
        update(table)
        .where(table.c.id == bindparam("row_id"), table.c.vault_key_id == old.id)
        .values(**values)
    )
    connection.execute(statement, changes)
    return len(changes)
