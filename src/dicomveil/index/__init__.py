"""The de-identified archive's metadata index (patient, study, series, instance) for QIDO-RS.

One interface, :class:`StudyIndex`, one SQLAlchemy implementation for both backends:
SQLite (embedded default, ``$DICOMVEIL_HOME/index.sqlite``, WAL) and PostgreSQL by URL.
Matching follows PS3.4 §C.2.2.2 (see :mod:`dicomveil.index.matching`); only pseudonymous
values are ever stored.

>>> from dicomveil.index import Level, Query, open_index
>>> index = open_index("sqlite://")
>>> index.search(Query(Level.STUDY)).rows
[]
"""

from __future__ import annotations

from dicomveil.index.attributes import ATTRIBUTES, Attribute, Level, MatchKind, matchable_at
from dicomveil.index.base import (
    HeaderSource,
    IndexCounts,
    Query,
    Row,
    RowValue,
    SearchResult,
    StoredInstance,
    StudyIndex,
)
from dicomveil.index.db import StudyIndexError, StudyIndexUnavailable, default_index_url
from dicomveil.index.matching import Condition, QueryError, parse_condition
from dicomveil.index.records import (
    BULK_PREFIX,
    InstanceRecord,
    metadata_from_file,
    record_from_file,
)
from dicomveil.index.sql import SqlStudyIndex

__all__ = [
    "ATTRIBUTES",
    "BULK_PREFIX",
    "Attribute",
    "Condition",
    "HeaderSource",
    "IndexCounts",
    "InstanceRecord",
    "Level",
    "MatchKind",
    "Query",
    "QueryError",
    "Row",
    "RowValue",
    "SearchResult",
    "SqlStudyIndex",
    "StoredInstance",
    "StudyIndex",
    "StudyIndexError",
    "StudyIndexUnavailable",
    "default_index_url",
    "matchable_at",
    "metadata_from_file",
    "open_index",
    "parse_condition",
    "record_from_file",
]


def open_index(url: str) -> StudyIndex:
    """Open (and create when missing) the index at a SQLAlchemy ``url``.

    Parameters
    ----------
    url:
        ``sqlite:///path/index.sqlite`` (``sqlite://`` for an in-memory index) or
        ``postgresql+psycopg://user@host/db``.

    Raises
    ------
    ConfigError
        The URL is invalid, its driver is missing, or the schema is of another version.
    StudyIndexError
        The database cannot be used.
    """
    return SqlStudyIndex(url)
