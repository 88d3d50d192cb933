"""Bringing an index written by an older dicomveil up to the current schema, in place.

Each step is idempotent and runs inside the transaction that creates the schema, so an index
is either wholly migrated or left as it was.

- 1 → 2: ``index_studies.organisation`` (the tenant a study belongs to; existing studies
  have none, which is what the single-tenant default sees).
"""

from __future__ import annotations

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from dicomveil.index.schema import SCHEMA_VERSION, studies
from dicomveil.index.schema import settings as settings_table

__all__ = ["migrate"]


def _add_organisation(connection: Connection) -> None:
    names = {column["name"] for column in inspect(connection).get_columns(studies.name)}
    if "organisation" not in names:
        connection.execute(text(f"ALTER TABLE {studies.name} ADD COLUMN organisation VARCHAR(32)"))
    connection.execute(
        text(
            "CREATE INDEX IF NOT EXISTS ix_index_studies_organisation "
            f"ON {studies.name} (organisation)"
        )
    )


def migrate(connection: Connection, version: str) -> str:
    """Migrate the index on ``connection`` from schema ``version``; return the new version
    (``version`` unchanged when no step applies: the caller refuses an unknown one)."""
    if version == "1":
        _add_organisation(connection)
        connection.execute(
            settings_table.update()
            .where(settings_table.c.name == "schema")
            .values(value=SCHEMA_VERSION)
        )
        return SCHEMA_VERSION
    return version
