"""Which vault keys a process holds, and the ``vault_key`` table that says which are valid.

The table holds one ``active`` key, plus a ``pending`` key while a rotation runs. Each row
has a check value sealed under its own key (to tell a wrong key from a damaged row). During
a rotation each of the two keys is also stored *wrapped* (sealed) under the other one, so a
process holding either key can read rows sealed under both: readers keep working while
rows are re-sealed one batch at a time, whichever key file they loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from dicomveil.errors import VaultError
from dicomveil.vault.crypto import VaultKey, associated_data
from dicomveil.vault.schema import keys

__all__ = ["ACTIVE", "PENDING", "Keyring"]

ACTIVE = "active"
PENDING = "pending"
_CHECK = b"dicomveil vault key check v1"


def _check_aad(key_id: str) -> bytes:
    return associated_data(keys.name, key_id, "check")


def _wrap_aad(key_id: str, wrapped_by: str) -> bytes:
    return associated_data(keys.name, key_id, f"wrapped-by:{wrapped_by}")


_ALL_KEYS: Final = select(keys)


def _verify_check(key: VaultKey, row: Mapping[str, Any]) -> None:
    where = f"{keys.name} row for key {key.id}"
    if key.open(row["check_value"], _check_aad(key.id), where=where) != _CHECK:
        raise VaultError(f"the check value of vault key {key.id} is wrong")


class Keyring:
    """The vault keys this process can use, refreshed from the ``vault_key`` table.

    Parameters
    ----------
    given:
        The keys loaded from the key store (first one is used to initialize a new vault).
    """

    def __init__(self, given: Sequence[VaultKey]) -> None:
        if not given:
            raise ValueError("at least one vault key is needed")
        self._first = given[0]
        self._known: dict[str, VaultKey] = {key.id: key for key in given}
        self._sealing: VaultKey | None = None
        self._states: dict[str, str] = {}
        self._checked: dict[str, bytes] = {}  # key id -> check value verified

    @property
    def states(self) -> dict[str, str]:
        """The vault's keys and their state (``active``/``pending``) as last read."""
        return dict(self._states)

    def sealing_key(self) -> VaultKey:
        """The key new values are sealed with: the pending key if any, else the active one."""
        if self._sealing is None:
            raise VaultError("the vault keys have not been read yet")
        return self._sealing

    def key(self, key_id: str, connection: Connection) -> VaultKey:
        """Return the key with ``key_id``, re-reading the table once if it is not known yet."""
        if key_id not in self._known:
            self.refresh(connection)
        try:
            return self._known[key_id]
        except KeyError:
            raise VaultError(
                f"a row is sealed under vault key {key_id}, which is not available"
            ) from None

    def all_keys(self) -> list[VaultKey]:
        """Every key held (for blind-index lookups that must match rows under any key)."""
        return list(self._known.values())

    def refresh(self, connection: Connection) -> None:
        """Re-read the key table, unwrap any key reachable from the ones held, pick the sealing key.

        Raises
        ------
        VaultError
            No key held opens this vault (wrong or retired key).
        """
        rows = [dict(row) for row in connection.execute(_ALL_KEYS).mappings()]
        self._states = {row["key_id"]: row["state"] for row in rows}
        self._unwrap(rows)
        usable = [row for row in rows if row["key_id"] in self._known]
        if not usable:
            vault_keys = ", ".join(sorted(self._states)) or "none"
            held = ", ".join(sorted(self._known))
            raise VaultError(
                f"vault key {held} does not open this vault (its key id: {vault_keys})"
            )
        for row in usable:
            if self._checked.get(row["key_id"]) != row["check_value"]:
                _verify_check(self._known[row["key_id"]], row)
                self._checked[row["key_id"]] = row["check_value"]
        by_state = {row["state"]: row["key_id"] for row in usable}
        self._sealing = self._known[by_state.get(PENDING) or by_state[ACTIVE]]

    def _unwrap(self, rows: Iterable[Mapping[str, Any]]) -> None:
        pending = [row for row in rows if row["wrapped"] is not None]
        for _ in range(len(pending)):
            for row in pending:
                wrapper = self._known.get(row["wrapped_by"])
                if row["key_id"] in self._known or wrapper is None:
                    continue
                where = f"{keys.name} row for key {row['key_id']}"
                aad = _wrap_aad(row["key_id"], wrapper.id)
                self._known[row["key_id"]] = VaultKey.from_secret(
                    wrapper.open(row["wrapped"], aad, where=where)
                )

    def initialize(self, connection: Connection) -> None:
        """Register the first given key as the vault's active key if the vault has none."""
        if connection.execute(select(keys.c.key_id).limit(1)).first() is None:
            connection.execute(insert(keys).values(**self._row(self._first, ACTIVE)))

    @staticmethod
    def _row(key: VaultKey, state: str) -> dict[str, Any]:
        return {
            "key_id": key.id,
            "state": state,
            "check_value": key.seal(_CHECK, _check_aad(key.id)),
            "wrapped": None,
            "wrapped_by": None,
            "created_at": datetime.now(UTC),
        }

    def begin_rotation(self, connection: Connection, old: VaultKey, new: VaultKey) -> None:
        """Add ``new`` as pending, each of ``old``/``new`` wrapped under the other."""
        self._known[new.id] = new
        pending = self._row(new, PENDING)
        pending.update(wrapped=old.seal(new.secret, _wrap_aad(new.id, old.id)), wrapped_by=old.id)
        connection.execute(insert(keys).values(**pending))
        connection.execute(
            update(keys)
            .where(keys.c.key_id == old.id)
            .values(wrapped=new.seal(old.secret, _wrap_aad(old.id, new.id)), wrapped_by=new.id)
        )

    @staticmethod
    def finish_rotation(connection: Connection, old: VaultKey, new: VaultKey) -> None:
        """Retire ``old`` and make ``new`` the active key (no wrapped copies remain)."""
        connection.execute(delete(keys).where(keys.c.key_id == old.id))
        connection.execute(
            update(keys)
            .where(keys.c.key_id == new.id)
            .values(state=ACTIVE, wrapped=None, wrapped_by=None)
        )
