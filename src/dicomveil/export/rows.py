"""Read the index for the analytics export: instances written in a time window, their parents.

Everything read here is what the index holds, pseudonymous values only (the index never
receives an original value). Rows come in batches in the order they were indexed, so a large
index streams through in bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.engine import Engine

from dicomveil.index.db import map_index_errors
from dicomveil.index.schema import instances, patients, series, studies

__all__ = [
    "PARENTS",
    "Parent",
    "Window",
    "count_instances",
    "instance_batches",
    "parent_rows",
]

_IN_CHUNK: Final = 500


@dataclass(frozen=True, slots=True)
class Window:
    """Which instances an export takes, by ``indexed_at`` (µs since the epoch, UTC).

    Attributes
    ----------
    after:
        Instances written strictly after this instant (the last export's watermark), or
        ``None``: from the beginning, including instances indexed before ``indexed_at``
        existed (they have none).
    since:
        Instances written at or after this instant (``--since``; wins over ``after``).
    until:
        Instances written at or before this instant (the new watermark).
    organisation:
        Only instances of this organisation's studies (``index_studies.organisation``);
        ``None``: every study's.
    """

    after: int | None
    since: int | None
    until: int
    organisation: str | None = None

    def clause(self) -> ColumnElement[bool]:
        """The ``WHERE`` clause selecting the window's instances."""
        return and_(self._time(), *self._tenant())

    def _time(self) -> ColumnElement[bool]:
        column = instances.c.indexed_at
        upper = column <= self.until
        if self.since is not None:
            return and_(column >= self.since, upper)
        if self.after is not None:
            return and_(column > self.after, upper)
        return or_(column.is_(None), upper)

    def _tenant(self) -> list[ColumnElement[bool]]:
        if self.organisation is None:
            return []
        own = select(studies.c.pk).where(studies.c.organisation == self.organisation)
        return [instances.c.study_pk.in_(own)]


_INSTANCE_COLUMNS: Final = (
    instances.c.pk,
    instances.c.sop_instance_uid,
    series.c.series_instance_uid,
    studies.c.study_instance_uid,
    patients.c.patient_id,
    studies.c.study_date,
    instances.c.sop_class_uid,
    instances.c.instance_number,
    instances.c.rows,
    instances.c.columns,
    instances.c.number_of_frames,
    instances.c.transfer_syntax_uid,
    instances.c.size,
    instances.c.sha256,
    instances.c.indexed_at,
    instances.c.series_pk,
    instances.c.study_pk,
    studies.c.patient_pk,
)


def count_instances(engine: Engine, window: Window) -> int:
    """Return how many instances ``window`` holds (for a progress bar's total)."""
    statement = select(func.count()).select_from(instances).where(window.clause())
    with map_index_errors("counting instances to export"), engine.connect() as connection:
        return int(connection.execute(statement).scalar_one())


def instance_batches(engine: Engine, window: Window, batch: int) -> Iterator[list[dict[str, Any]]]:
    """Yield the window's instances (with their parents' UIDs and study date), ``batch`` rows
    at a time, in the order they were first indexed.

    Batches are read by key range (``pk > last``), each in its own short read, so no cursor
    stays open while the caller writes files.
    """
    joined = instances.join(series, series.c.pk == instances.c.series_pk).join(
        studies, studies.c.pk == instances.c.study_pk
    )
    joined = joined.join(patients, patients.c.pk == studies.c.patient_pk)
    last = 0
    while True:
        statement = (
            select(*_INSTANCE_COLUMNS)
            .select_from(joined)
            .where(window.clause(), instances.c.pk > last)
            .order_by(instances.c.pk)
            .limit(batch)
        )
        with map_index_errors("exporting instances"), engine.connect() as connection:
            rows = [dict(row) for row in connection.execute(statement).mappings()]
        if not rows:
            return
        last = int(rows[-1]["pk"])
        yield rows
        if len(rows) < batch:
            return


@dataclass(frozen=True, slots=True)
class Parent:
    """How to read one level of the instances' parents (series, studies, patients).

    Attributes
    ----------
    key:
        The instance row's column holding the parent's primary key (``series_pk``).
    columns:
        What the export keeps of the parent.
    source:
        Where the columns come from (the level's table, joined to its own parent).
    pk:
        The level's primary key column.
    """

    key: str
    columns: tuple[Any, ...]
    source: Any
    pk: Any


PARENTS: Final = {
    "series": Parent(
        "series_pk",
        (
            series.c.series_instance_uid,
            studies.c.study_instance_uid,
            studies.c.study_date,
            series.c.modality,
            series.c.series_number,
            series.c.series_description,
            series.c.num_instances,
        ),
        series.join(studies, studies.c.pk == series.c.study_pk),
        series.c.pk,
    ),
    "studies": Parent(
        "study_pk",
        (
            studies.c.study_instance_uid,
            patients.c.patient_id,
            studies.c.study_date,
            studies.c.study_time,
            studies.c.accession_number,
            studies.c.study_id,
            studies.c.referring_physician_name,
            studies.c.study_description,
            studies.c.modalities,
            studies.c.num_series,
            studies.c.num_instances,
        ),
        studies.join(patients, patients.c.pk == studies.c.patient_pk),
        studies.c.pk,
    ),
    "patients": Parent(
        "patient_pk",
        (patients.c.patient_id, patients.c.patient_name, patients.c.birth_date, patients.c.sex),
        patients,
        patients.c.pk,
    ),
}
"""The parents an export writes beside the instances, by level: series (with their study's
UID and date), studies (current values and counts), patients (pseudonymous id, name, birth
date)."""


def parent_rows(engine: Engine, level: str, keys: Iterable[int]) -> list[dict[str, Any]]:
    """Return the rows of ``level`` (a key of :data:`PARENTS`) with primary keys ``keys``,
    read ``IN`` chunks at a time in one connection."""
    parent = PARENTS[level]
    statement = select(*parent.columns).select_from(parent.source)
    ordered = sorted(keys)
    found: list[dict[str, Any]] = []
    with map_index_errors(f"exporting {level}"), engine.connect() as connection:
        for start in range(0, len(ordered), _IN_CHUNK):
            selected = statement.where(parent.pk.in_(ordered[start : start + _IN_CHUNK]))
            found += [dict(row) for row in connection.execute(selected).mappings()]
    return found
