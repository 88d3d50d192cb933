"""Database plumbing of the vault: URLs, engines, migrations and error mapping.

SQLite (the embedded default, ``$DICOMVEIL_HOME/vault.sqlite``) is opened in WAL mode with a
busy timeout and ``synchronous=FULL``; write transactions start with ``BEGIN IMMEDIATE`` so
several processes writing at once queue on SQLite's lock instead of failing with
"database is locked". PostgreSQL (``postgresql+psycopg://...``) is used as is; concurrent
migrations are serialized there by an advisory lock.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib import resources
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from dicomveil import database
from dicomveil.errors import ConfigError, VaultError
from dicomveil.home import state_home

__all__ = [
    "ENV_VAULT_URL",
    "default_vault_url",
    "lock",
    "make_engine",
    "map_database_errors",
    "migrate",
    "public_url",
    "write_transaction",
]

ENV_VAULT_URL = "DICOMVEIL_VAULT_URL"
VAULT_FILE = "vault.sqlite"
_PG_LOCK = 0x6469636F6D  # an arbitrary constant: "dicom"


def default_vault_url(url: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """Return the vault URL: ``url``, else ``$DICOMVEIL_VAULT_URL``, else its place in the
    shared database ``$DICOMVEIL_DATABASE_URL``, else the SQLite default.

    The default file is ``$DICOMVEIL_HOME/vault.sqlite`` (never a destination folder).
    """
    env = os.environ if environ is None else environ
    chosen = url or env.get(ENV_VAULT_URL)
    if chosen:
        return chosen
    shared = database.shared_database_url(None, env)
    if shared:
        return database.store_url(shared, "vault")
    return f"sqlite:///{state_home(dict(env)) / VAULT_FILE}"


def public_url(url: str) -> str:
    """Return ``url`` with any password masked (safe for messages)."""
    return database.public_url(url, "vault")


sqlite_path = database.sqlite_path


def make_engine(url: str, *, create: bool) -> Engine:
    """Create the engine for ``url`` with the vault's connection settings.

    Parameters
    ----------
    url:
        A SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://...``).
    create:
        For SQLite, create the database file (mode 0600) when it does not exist; when false a
        missing file is an error.

    Raises
    ------
    ConfigError
        The URL is invalid or its driver is not installed.
    VaultError
        The SQLite file does not exist and ``create`` is false.
    """
    try:
        path = sqlite_path(url)
    except ArgumentError:
        raise ConfigError("the vault URL is not a valid database URL") from None
    if path is not None and not path.exists() and not create:
        raise VaultError(f"no vault at {path}")
    return database.make_engine(url, what="vault", synchronous="FULL")


write_transaction = database.write_transaction


@contextmanager
def map_database_errors(operation: str) -> Iterator[None]:
    """Turn SQLAlchemy and driver errors into :class:`VaultError` naming ``operation`` only.

    The driver's message is not repeated: it may quote statement parameters.
    """
    try:
        yield
    except SQLAlchemyError as exc:
        reason = type(getattr(exc, "orig", None) or exc).__name__
        raise VaultError(f"vault database error while {operation} ({reason})") from exc


def lock(connection: Connection, *, shared: bool = False) -> None:
    """Take the vault-wide lock for the rest of the current transaction.

    PostgreSQL: a transaction-scoped advisory lock (``shared`` for ordinary writers,
    exclusive for schema changes and key rotation steps). SQLite needs nothing more: a
    write transaction already holds the database's single write lock.
    """
    if connection.dialect.name == "postgresql":
        function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        connection.execute(text(f"SELECT {function}(:k)"), {"k": _PG_LOCK})


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    location = resources.files("dicomveil.vault") / "migrations"
    config.set_main_option("script_location", str(location))
    config.attributes["connection"] = connection
    return config


def _head_revision(config: Any) -> str | None:
    from alembic.script import ScriptDirectory

    head: str | None = ScriptDirectory.from_config(config).get_current_head()
    return head


HEAD_REVISION: Final = "0002"
"""The newest revision in ``migrations/versions`` (a test keeps it equal to Alembic's head).

Knowing it lets :func:`migrate` check a vault without importing Alembic, and create a new
SQLite vault from :mod:`~dicomveil.vault.schema` (the same tables and indexes as replaying
the revisions, which a test also checks): opening the vault is on every ``deid``'s path.
"""
_VERSION_TABLE = "vault_alembic_version"


def _stamped(connection: Connection) -> str | None:
    """The revision recorded in the vault (plain SQL, as Alembic reads it), or ``None``."""
    from sqlalchemy import inspect

    if not inspect(connection).has_table(_VERSION_TABLE):
        return None
    row = connection.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}")).first()
    return None if row is None else str(row[0])


def _create(connection: Connection) -> None:
    """Create the schema of a new SQLite vault at :data:`HEAD_REVISION`, stamped as Alembic
    would have left it."""
    from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, inspect

    from dicomveil.vault.schema import metadata

    if inspect(connection).get_table_names():
        raise VaultError("the vault database holds tables but no schema revision")
    metadata.create_all(connection)
    version = Table(
        _VERSION_TABLE,
        MetaData(),
        Column("version_num", String(32), nullable=False),
        PrimaryKeyConstraint("version_num", name=f"{_VERSION_TABLE}_pkc"),
    )
    version.create(connection)
    connection.execute(version.insert().values(version_num=HEAD_REVISION))


def migrate(engine: Engine) -> str | None:
    """Bring the schema to the newest Alembic revision; return that revision.

    Cheap when the schema is current (one read, without importing Alembic). Otherwise the
    upgrade runs in one write transaction holding SQLite's write lock or a PostgreSQL
    advisory lock, so processes opening a new vault at the same moment migrate it exactly
    once. A new SQLite vault is created from the schema directly (Alembic replays the
    revisions for PostgreSQL and for older vaults).
    """
    with map_database_errors("migrating the schema"):
        with engine.connect() as connection:
            if _stamped(connection) == HEAD_REVISION:
                return HEAD_REVISION
        with write_transaction(engine) as connection:
            lock(connection)
            current = _stamped(connection)
            if current is None and connection.dialect.name == "sqlite":
                _create(connection)
            elif current != HEAD_REVISION:
                from alembic import command

                command.upgrade(_alembic_config(connection), "head")
        return HEAD_REVISION
