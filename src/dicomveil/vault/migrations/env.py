"""Alembic environment: migrate the connection handed over by :func:`dicomveil.vault.db.migrate`.

Only online migrations on a connection passed in ``config.attributes["connection"]`` are
supported; the caller owns the transaction (and the lock that serializes migrating processes).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from dicomveil.vault.schema import metadata


def _run() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection) or context.is_offline_mode():
        raise RuntimeError("vault migrations run on a live connection from dicomveil.vault")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table="vault_alembic_version",
    )
    with context.begin_transaction():
        context.run_migrations()


_run()
