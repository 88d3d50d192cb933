"""The index port (:class:`StudyIndex`) and the value objects that cross it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from dicomveil.index.attributes import Level
from dicomveil.index.matching import Condition, QueryError
from dicomveil.index.records import InstanceRecord

__all__ = [
    "HeaderSource",
    "IndexCounts",
    "Query",
    "Row",
    "RowValue",
    "SearchResult",
    "StoredInstance",
    "StudyIndex",
]

RowValue = str | int | list[str] | None
_MAX_PAGING = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Query:
    """One QIDO-RS search.

    Attributes
    ----------
    level:
        What is searched for: studies, series or instances.
    conditions:
        Matching conditions by attribute keyword (universal matching is no entry).
    study_uid, series_uid:
        The study and series named in the URL (hierarchical searches).
    limit, offset:
        Paging: at most ``limit`` rows after skipping ``offset``.
    flat:
        A flat search (``/series``, ``/instances``): rows also carry the attributes of
        the levels above.
    with_metadata:
        Also return each row's representative instance header (for ``includefield``).
    organisation:
        Only studies of this organisation (tenant) match; ``None``: every study (a reader
        bound to no organisation, the single-tenant default).
    """

    level: Level
    conditions: Mapping[str, Condition] = field(default_factory=dict)
    study_uid: str | None = None
    series_uid: str | None = None
    limit: int = 100
    offset: int = 0
    flat: bool = False
    with_metadata: bool = False
    organisation: str | None = None

    def __post_init__(self) -> None:
        if not (0 <= self.limit <= _MAX_PAGING and 0 <= self.offset <= _MAX_PAGING):
            raise QueryError(f"limit and offset must be between 0 and {_MAX_PAGING}")


@dataclass(frozen=True, slots=True)
class HeaderSource:
    """The instance a row's header comes from, to build the header when the index has none."""

    sop_instance_uid: str
    storage_key: str


@dataclass(frozen=True, slots=True)
class Row:
    """One search result.

    Attributes
    ----------
    values:
        Attribute values by keyword, including the computed counts and
        ``ModalitiesInStudy`` (a list) at the study level.
    metadata:
        The DICOM JSON text of a representative instance (the row's own instance at the
        instance level), when the query asked for it; ``""`` when the index does not hold
        it yet (see :meth:`StudyIndex.set_metadata`).
    source:
        That representative instance, when the query asked for metadata.
    """

    level: Level
    values: dict[str, RowValue]
    metadata: str | None = None
    source: HeaderSource | None = None


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Rows of one page, and whether more rows matched beyond it."""

    rows: list[Row]
    more: bool = False


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """Where one archived instance is and what it is (for WADO-RS)."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    storage_key: str
    size: int
    sha256: str
    number_of_frames: int | None
    metadata: str = field(repr=False)
    """The header as DICOM JSON; ``""`` when the index does not hold it yet."""


@dataclass(frozen=True, slots=True)
class IndexCounts:
    """How much the index holds."""

    patients: int
    studies: int
    series: int
    instances: int


@runtime_checkable
class StudyIndex(Protocol):
    """The metadata index of the de-identified archive, for QIDO-RS and WADO-RS.

    Every implementation passes the contract suite in ``tests/index/``.
    """

    url: str

    def add(self, records: Sequence[InstanceRecord]) -> int:
        """Insert or replace instances (by SOP Instance UID); return how many were new."""
        ...

    def set_metadata(self, headers: Mapping[str, str]) -> None:
        """Keep the DICOM JSON of instances added without it, by SOP Instance UID.

        Instances that already have their header, or are not indexed, are left as they are.
        """
        ...

    def search(self, query: Query) -> SearchResult:
        """Return one page of the studies, series or instances that match ``query``."""
        ...

    def instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        organisation: str | None = None,
    ) -> list[StoredInstance]:
        """Return the stored instances of a study (or series, or one instance), ordered;
        with ``organisation``, only when the study belongs to it (else none)."""
        ...

    def owners(self, study_uids: Sequence[str]) -> dict[str, str | None]:
        """Return the organisation of each indexed study among ``study_uids`` (``None``:
        none); studies not indexed are absent."""
        ...

    def counts(self, organisation: str | None = None) -> IndexCounts:
        """Return how many patients, studies, series and instances are indexed (of the
        studies of ``organisation`` only, when given: a tenant's console)."""
        ...

    def ping(self) -> None:
        """Raise :class:`~dicomveil.index.db.StudyIndexError` when the database is unusable."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
