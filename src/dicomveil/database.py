"""Shared database plumbing for the vault and the index: engines, write transactions, URLs.

SQLite (the embedded default) is opened in WAL mode with a busy timeout, and write
transactions take the lock up front (``BEGIN IMMEDIATE``), so several processes writing at
once queue on SQLite's lock instead of failing with "database is locked". PostgreSQL
(``postgresql+psycopg://...``) is used as is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from dicomveil.errors import ConfigError

__all__ = ["make_engine", "public_url", "sqlite_path", "write_transaction"]

_BUSY_TIMEOUT_S: Final = 60.0
_WRITE: Final = "dicomveil_write"


def public_url(url: str, what: str = "database") -> str:
    """Return ``url`` with any password masked (safe for messages and logs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return f"<unparsable {what} URL>"


def sqlite_path(url: str) -> Path | None:
    """Return the database file of a SQLite URL, or ``None`` (other backends, memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(str(parsed.database))


def make_engine(
    url: str,
    *,
    what: str,
    synchronous: str = "NORMAL",
    pragmas: Sequence[str] = (),
    pool: dict[str, Any] | None = None,
) -> Engine:
    """Create the engine for ``url``; a missing SQLite file is created with mode 0600.

    Parameters
    ----------
    what:
        What the database is ("vault", "index"), for error messages.
    synchronous:
        SQLite's ``synchronous`` setting (``FULL`` where a lost commit matters).
    pragmas:
        More SQLite ``PRAGMA`` statements run on each connection.
    pool:
        Pool options for server databases.

    Raises
    ------
    ConfigError
        The URL is invalid or its driver is not installed.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"the {what} URL is not a valid database URL") from None
    path = sqlite_path(url)
    if path is not None:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        return _sqlite_engine(url, synchronous, pragmas)
    if parsed.drivername == "postgresql":  # we ship psycopg 3, not psycopg2
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        return create_engine(parsed, pool_pre_ping=True, **(pool or {}))
    except (NoSuchModuleError, ImportError) as exc:
        hint = " (pip install 'dicomveil[postgres]')" if "postgres" in url else ""
        raise ConfigError(f"no database driver for {public_url(url, what)}{hint}") from exc


def _sqlite_engine(url: str, synchronous: str, pragmas: Sequence[str]) -> Engine:
    engine = create_engine(url, connect_args={"timeout": _BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # BEGIN is emitted below
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA synchronous = {synchronous}")
        for pragma in pragmas:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """Yield a connection inside a write transaction, committed on success.

    On SQLite the transaction takes the write lock up front (``BEGIN IMMEDIATE``), so a
    read-then-write never fails half-way because another process wrote in between.
    """
    with engine.connect() as connection:
        connection.execution_options(**{_WRITE: True})
        with connection.begin():
            yield connection
