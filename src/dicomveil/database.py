"""Shared database plumbing of every store: engines, write transactions, URLs.

SQLite (the embedded default) is opened in WAL mode with a busy timeout, and write
transactions take the lock up front (``BEGIN IMMEDIATE``), so several processes writing at
once queue on SQLite's lock instead of failing with "database is locked". PostgreSQL
(``postgresql+psycopg://...``) is used as is.

One shared database (``--database URL``, ``DICOMVEIL_DATABASE_URL``, ``database_url``) is
the default home of every shared table; :func:`store_url` gives each store its place in it.
The vault, the index and the routing queue each get a schema of their own in PostgreSQL
(``dicomveil_vault``, ``dicomveil_index``, ``dicomveil_routing``, created on first use,
selected by the connection's ``search_path``) and a file of its own beside a SQLite database
(``state.sqlite`` → ``state-vault.sqlite``), so their tables (the vault's are named
``studies``, ``instances``...) and schema versions never meet. The tables of the small
shared state (tokens, audit chain, and what other modules add: see :data:`STATE_STORE`) live
in the database itself, under names that start with ``dicomveil_``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from sqlalchemy import MetaData, Table, create_engine, event, insert, select, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError

from dicomveil.errors import ConfigError
from dicomveil.home import ENV_DATABASE_URL, shared_database_url

__all__ = [
    "ENV_DATABASE_URL",
    "STATE_STORE",
    "STORES",
    "database_errors",
    "make_engine",
    "open_state_tables",
    "public_url",
    "shared_database_url",
    "sqlite_path",
    "state_url",
    "store_url",
    "write_transaction",
]

_BUSY_TIMEOUT_S: Final = 60.0
_WRITE: Final = "dicomveil_write"
_SEARCH_PATH: Final = re.compile(r"-csearch_path=(dicomveil_[a-z]+)")

STATE_STORE: Final = "state"
"""The store of the small shared tables (tokens, audit chain, outbox...): the database itself."""
STORES: Final = ("vault", "index", "routing", STATE_STORE)
"""The stores :func:`store_url` places in a shared database."""


def state_url(
    home: Path, name: str, database_url: str | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """Where a module's small shared tables go: the shared database (``database_url``, else
    ``$DICOMVEIL_DATABASE_URL``) when one is set, else its own embedded SQLite file
    ``<home>/<name>.sqlite``. Name such tables ``dicomveil_<module>_...``; open the URL with
    :func:`make_engine` and write with :func:`write_transaction`."""
    shared = shared_database_url(database_url, environ)
    if shared:
        return store_url(shared, STATE_STORE)
    return f"sqlite:///{Path(home) / f'{name}.sqlite'}"


def store_url(database_url: str, store: str) -> str:
    """Where ``store`` (one of :data:`STORES`) lives in the shared database ``database_url``.

    PostgreSQL: the same database, with the connection's ``search_path`` set to the schema
    ``dicomveil_<store>`` (:func:`make_engine` creates it on first use); SQLite: the file
    ``<name>-<store><suffix>`` beside it. The state store is the database itself.

    Raises
    ------
    ConfigError
        An unknown store, or a URL that is not a database URL.
    """
    if store not in STORES:
        raise ConfigError(f"unknown store {store!r} (known: {', '.join(STORES)})")
    try:
        parsed = make_url(database_url)
    except ArgumentError:
        raise ConfigError("the shared database URL is not a valid database URL") from None
    if store == STATE_STORE:
        return database_url
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(database_url)
        if path is None:  # in memory: each engine has its own anyway
            return database_url
        moved = parsed.set(database=str(path.with_name(f"{path.stem}-{store}{path.suffix}")))
        return moved.render_as_string(hide_password=False)
    if parsed.get_backend_name() == "postgresql":
        option = f"-csearch_path=dicomveil_{store}"
        current = parsed.query.get("options")
        if isinstance(current, str) and current:
            option = f"{current} {option}"
        return parsed.update_query_dict({"options": option}).render_as_string(hide_password=False)
    return database_url  # other servers: one namespace (their own URL per store wins)


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
        engine = create_engine(parsed, pool_pre_ping=True, **(pool or {}))
    except (NoSuchModuleError, ImportError) as exc:
        hint = " (pip install 'dicomveil[postgres]')" if "postgres" in url else ""
        raise ConfigError(f"no database driver for {public_url(url, what)}{hint}") from exc
    options = parsed.query.get("options")
    found = _SEARCH_PATH.search(options) if isinstance(options, str) else None
    if found is not None and parsed.get_backend_name() == "postgresql":
        _create_schema_on_connect(engine, found.group(1))
    return engine


def _create_schema_on_connect(engine: Engine, schema: str) -> None:
    """Create the store's schema (see :func:`store_url`) when a connection finds it missing.

    Checked per new connection (pooled: rarely); two processes creating it at once is
    harmless (the loser's unique violation is rolled back and ignored).
    """

    @event.listens_for(engine, "connect")
    def _ensure(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            dbapi_connection.commit()
        except Exception as exc:  # noqa: BLE001 - a concurrent creator won: fine
            dbapi_connection.rollback()
            if type(exc).__name__ not in ("UniqueViolation", "DuplicateSchema"):
                raise
        finally:
            cursor.close()


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


_SCHEMA_LOCK: Final = 0x64636D76
"""PostgreSQL advisory lock key (``dcmv``) held while a schema is created."""


@contextmanager
def schema_transaction(engine: Engine) -> Iterator[Connection]:
    """A :func:`write_transaction` for creating tables.

    On PostgreSQL it first takes a transaction-level advisory lock: ``CREATE TABLE IF NOT
    EXISTS`` run by two processes at once can collide in the catalogue (a unique violation on
    ``pg_type``), so processes starting together (workers of a cluster) queue here instead.
    SQLite's ``BEGIN IMMEDIATE`` already serialises them.
    """
    with write_transaction(engine) as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
        yield connection


def create_tables(engine: Engine, metadata: MetaData) -> None:
    """Create ``metadata``'s missing tables, safely when several processes start at once."""
    with schema_transaction(engine) as connection:
        metadata.create_all(connection)


@contextmanager
def database_errors(error: Callable[[str], Exception]) -> Iterator[None]:
    """Turn a database error inside the block into ``error(reason)``, where ``reason`` is
    the type name of the driver's error only (never a statement or its parameters, which
    may hold values)."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise error(type(getattr(exc, "orig", None) or exc).__name__) from None


def open_state_tables(
    url: str,
    *,
    what: str,
    metadata: MetaData,
    head: Table,
    first_row: Mapping[str, Any],
    error: Callable[[str], Exception],
) -> Engine:
    """Open a state-store module's database (``synchronous = FULL``: a lost commit matters),
    creating its tables on first use, and the one row (``id`` 1, ``first_row``) of its
    ``head`` table that writers lock to queue.

    Several processes opening at once is harmless (the head row's loser is ignored).
    Database errors become ``error(reason)`` (:func:`database_errors`).

    Raises
    ------
    ConfigError
        Bad URL or no driver.
    """
    engine = make_engine(url, what=what, synchronous="FULL")
    with database_errors(error):
        try:
            with schema_transaction(engine) as conn:
                metadata.create_all(conn)
                if conn.execute(select(head.c.id)).first() is None:
                    conn.execute(insert(head).values(id=1, **first_row))
        except IntegrityError:
            pass  # another process created the head row first
    return engine
