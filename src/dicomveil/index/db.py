"""Database plumbing of the index: URLs, engines, transactions, error mapping.

SQLite (the embedded default, ``$DICOMVEIL_HOME/index.sqlite``) runs in WAL mode with a busy
timeout, case-sensitive ``LIKE`` (DICOM matching is case-sensitive, and a case-sensitive
``LIKE 'ABC%'`` can use an index) and write transactions that take the lock up front
(``BEGIN IMMEDIATE``), so several server processes can share one index. PostgreSQL
(``postgresql+psycopg://...``) is used as is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from dicomveil.errors import ConfigError, DicomveilError, Retryable

__all__ = [
    "INDEX_FILE",
    "StudyIndexError",
    "StudyIndexUnavailable",
    "default_index_url",
    "make_engine",
    "map_index_errors",
    "public_url",
    "write_transaction",
]

INDEX_FILE: Final = "index.sqlite"
_BUSY_TIMEOUT_S: Final = 60.0
_WRITE: Final = "dicomveil_index_write"


class StudyIndexError(DicomveilError):
    """The index database failed (the message names the operation, never a value)."""


class StudyIndexUnavailable(StudyIndexError, Retryable):
    """The index database cannot be reached right now."""


def default_index_url(home: Path) -> str:
    """Return the embedded default: ``sqlite:///<home>/index.sqlite``."""
    return f"sqlite:///{home / INDEX_FILE}"


def public_url(url: str) -> str:
    """Return ``url`` with any password masked (safe for messages and logs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable index URL>"


def make_engine(url: str) -> Engine:
    """Create the engine for ``url`` (the SQLite file is created with mode 0600).

    Raises
    ------
    ConfigError
        The URL is invalid or its driver is not installed.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("the index URL is not a valid database URL") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            path = Path(database)
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        return _sqlite_engine(url)
    if parsed.drivername == "postgresql":  # we ship psycopg 3, not psycopg2
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=10)
    except (NoSuchModuleError, ImportError) as exc:
        hint = " (pip install 'dicomveil[postgres]')" if "postgres" in url else ""
        raise ConfigError(f"no database driver for {public_url(url)}{hint}") from exc


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": _BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # BEGIN is emitted below
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA case_sensitive_like = ON")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """Yield a connection inside a write transaction, committed on success."""
    with engine.connect() as connection:
        connection.execution_options(**{_WRITE: True})
        with connection.begin():
            yield connection


@contextmanager
def map_index_errors(operation: str) -> Iterator[None]:
    """Turn SQLAlchemy and driver errors into :class:`StudyIndexError` naming ``operation``.

    The driver's message is not repeated: it may quote statement parameters.
    """
    from sqlalchemy.exc import DisconnectionError, OperationalError

    try:
        yield
    except (OperationalError, DisconnectionError) as exc:
        reason = type(getattr(exc, "orig", None) or exc).__name__
        raise StudyIndexUnavailable(f"index database error while {operation} ({reason})") from exc
    except SQLAlchemyError as exc:
        reason = type(getattr(exc, "orig", None) or exc).__name__
        raise StudyIndexError(f"index database error while {operation} ({reason})") from exc
