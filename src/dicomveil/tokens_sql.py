"""The gateway's tokens in the shared database (``--database``), for several hosts at once.

The same records as ``tokens.json`` (:mod:`dicomveil.tokens`: the SHA-256 of the token only,
never the token; expiry, organisation, last use at most once a minute per process), in two
tables of the state store (:func:`dicomveil.database.store_url`):

``dicomveil_tokens``
    One row per token: ``id``, ``sha256`` (unique), ``position`` (creation order) and
    ``entry``, the record as JSON exactly as the file stores it (fields added later travel
    without a schema change).
``dicomveil_tokens_version``
    One row whose ``generation`` grows with every change. Writers lock it (``FOR UPDATE``
    on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite) for the whole read-modify-write, so two
    hosts creating or revoking at once never lose a change; readers compare it to the one
    they loaded, so every process sees new and revoked tokens on its next request (one
    one-row query per check).

Database failures raise :class:`~dicomveil.errors.ConfigError` naming the operation and
the error's type only (never statement parameters).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Final

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine

from dicomveil.database import database_errors, open_state_tables, write_transaction
from dicomveil.errors import ConfigError
from dicomveil.tokens import TokenStore

__all__ = ["SqlTokenStore", "metadata"]

metadata: Final = MetaData()

tokens_table: Final = Table(
    "dicomveil_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("position", BigInteger, nullable=False),
    Column("entry", Text, nullable=False),
)

version_table: Final = Table(
    "dicomveil_tokens_version",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("generation", BigInteger, nullable=False),
)


class SqlTokenStore(TokenStore):
    """:class:`~dicomveil.tokens.TokenStore` on the shared database (see the module).

    Parameters
    ----------
    engine:
        The shared database (its state store).
    path:
        Only named in messages (the file store's path; nothing is written there).
    """

    def __init__(self, engine: Engine, path: Path) -> None:
        super().__init__(path)
        self.engine = engine

    @classmethod
    def open(cls, url: str, path: Path) -> SqlTokenStore:
        """Open the store at ``url``, creating its tables on first use.

        Raises
        ------
        ConfigError
            Bad URL, no driver, or the database cannot be reached.
        """
        engine = open_state_tables(
            url,
            what="token database",
            metadata=metadata,
            head=version_table,
            first_row={"generation": 0},
            error=_error("opening"),
        )
        return cls(engine, path)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def _read(self) -> list[dict[str, str]]:
        with _failing("reading tokens"), self.engine.connect() as conn:
            return _entries(conn)

    @contextmanager
    def _locked(self) -> Iterator[list[dict[str, str]]]:
        with _failing("writing tokens"), write_transaction(self.engine) as conn:
            conn.execute(select(version_table.c.generation).with_for_update()).first()
            before = {entry["id"]: entry for entry in _entries(conn)}
            entries = list(before.values())
            yield entries
            after = {entry["id"]: entry for entry in entries}
            gone = [token_id for token_id in before if token_id not in after]
            if gone:
                conn.execute(delete(tokens_table).where(tokens_table.c.id.in_(gone)))
            position = (
                conn.execute(
                    select(tokens_table.c.position).order_by(tokens_table.c.position.desc())
                ).scalar()
                or 0
            )
            for token_id, entry in after.items():
                text = json.dumps(entry, sort_keys=True)
                if token_id not in before:
                    position += 1
                    conn.execute(
                        insert(tokens_table).values(
                            id=token_id, sha256=entry["sha256"], position=position, entry=text
                        )
                    )
                elif entry != before[token_id]:
                    row = tokens_table.c.id == token_id
                    conn.execute(update(tokens_table).where(row).values(entry=text))
            generation = version_table.c.generation
            conn.execute(update(version_table).values(generation=generation + 1))

    def _version(self) -> tuple[int, int] | None:
        with _failing("checking tokens"), self.engine.connect() as conn:
            generation = conn.execute(select(version_table.c.generation)).scalar()
        return (0, int(generation)) if generation else None


def _entries(conn: Connection) -> list[dict[str, str]]:
    rows = conn.execute(select(tokens_table.c.entry).order_by(tokens_table.c.position))
    entries: list[dict[str, str]] = []
    for (text,) in rows:
        entry = json.loads(text)
        if not isinstance(entry, dict):
            raise ConfigError("the token database holds a record that is not a token")
        entries.append(entry)
    return entries


def _error(operation: str) -> Callable[[str], ConfigError]:
    """The :class:`ConfigError` of a database error while ``operation``, by its reason."""
    return lambda reason: ConfigError(f"token database error while {operation} ({reason})")


def _failing(operation: str) -> AbstractContextManager[None]:
    """Turn database errors into a :class:`ConfigError` naming ``operation`` only."""
    return database_errors(_error(operation))
