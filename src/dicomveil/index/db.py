"""Database plumbing of the index: URLs, engines, transactions, error mapping.

SQLite (the embedded default, ``$DICOMVEIL_HOME/index.sqlite``) runs in WAL mode with a busy
timeout, case-sensitive ``LIKE`` (DICOM matching is case-sensitive, and a case-sensitive
``LIKE 'ABC%'`` can use an index) and write transactions that take the lock up front
(``BEGIN IMMEDIATE``), so several server processes can share one index. PostgreSQL
(``postgresql+psycopg://...``) is used as is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from dicomveil import database
from dicomveil.errors import StudyIndexError, StudyIndexUnavailable

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


def default_index_url(home: Path) -> str:
    """Return the embedded default: ``sqlite:///<home>/index.sqlite``."""
    return f"sqlite:///{home / INDEX_FILE}"


def public_url(url: str) -> str:
    """Return ``url`` with any password masked (safe for messages and logs)."""
    return database.public_url(url, "index")


def make_engine(url: str) -> Engine:
    """Create the engine for ``url`` (the SQLite file is created with mode 0600).

    Raises
    ------
    ConfigError
        The URL is invalid or its driver is not installed.
    """
    return database.make_engine(
        url,
        what="index",
        pragmas=("case_sensitive_like = ON", "foreign_keys = ON"),
        pool={"pool_size": 10, "max_overflow": 10},
    )


write_transaction = database.write_transaction
schema_transaction = database.schema_transaction


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
