"""Inserting and replacing instances inside one write transaction, counts kept in step."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from functools import cache
from typing import Any, Final

from sqlalchemy import Table, bindparam, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Executable

from dicomveil.index.matching import normalize_date, normalize_time
from dicomveil.index.records import InstanceRecord
from dicomveil.index.schema import instances, patients, received, series, studies

__all__ = ["Writer"]

_CHUNK: Final = 500
"""SOP Instance UIDs looked up per statement (SQLite allows 999 parameters)."""


# Statements built once and executed with parameters: building a statement (and its cache
# key) costs more than running it on SQLite.


@cache
def _lookup(table: Table, key_column: str, columns: tuple[str, ...]) -> Executable:
    return select(table.c.pk, *(table.c[name] for name in columns)).where(
        table.c[key_column] == bindparam("row_key")
    )


@cache
def _insert(table: Table) -> Executable:
    return table.insert()


@cache
def _update(table: Table) -> Executable:
    """Set the columns given as parameters on the row whose key is ``row_pk``."""
    return table.update().where(table.c.pk == bindparam("row_pk"))


_KNOWN_INSTANCES: Final = select(instances.c.sop_instance_uid).where(
    instances.c.sop_instance_uid.in_(bindparam("uids", expanding=True))
)
_STUDY_MODALITIES: Final = (
    select(series.c.modality)
    .where(series.c.study_pk == bindparam("row_pk"), series.c.modality.is_not(None))
    .distinct()
)
_BUMP_SERIES: Final = (
    series.update()
    .where(series.c.pk == bindparam("row_pk"))
    .values(num_instances=series.c.num_instances + bindparam("added"))
)
_STAMP_RECEIVED: Final = (
    received.update()
    .where(received.c.study_pk == bindparam("row_pk"))
    .values(received_at=bindparam("now"))
)
_BUMP_STUDY: Final = (
    studies.update()
    .where(studies.c.pk == bindparam("row_pk"))
    .values(
        num_series=studies.c.num_series + bindparam("added_series"),
        num_instances=studies.c.num_instances + bindparam("added_instances"),
    )
)


def _date(value: str) -> str | None:
    return normalize_date(value) if value else None


def _upper(value: str) -> str | None:
    return value.upper() if value else None


class Writer:
    """Upserts records on one connection, remembering the rows it has seen in this batch."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._patients: dict[str, tuple[int, dict[str, Any]]] = {}
        self._studies: dict[str, tuple[int, dict[str, Any]]] = {}
        self._series: dict[str, tuple[int, dict[str, Any]]] = {}
        self.indexed_at = time.time_ns() // 1000
        """When this transaction writes (µs since the epoch, UTC): every instance's
        ``indexed_at``, the analytics export's watermark."""

    def _ensure(
        self,
        cache: dict[str, tuple[int, dict[str, Any]]],
        table: Any,
        key_column: str,
        key: str,
        values: dict[str, Any],
        on_insert: dict[str, Any] | None = None,
    ) -> tuple[int, bool, set[str]]:
        """Insert the row keyed ``key`` or update its changed columns (``on_insert``: columns
        set only when the row is inserted, never changed later).

        Returns the primary key, whether the row is new, and the names of changed columns.
        """
        known = cache.get(key)
        if known is None:
            found = self.connection.execute(
                _lookup(table, key_column, tuple(values)), {"row_key": key}
            ).first()
            if found is None:
                inserted = self.connection.execute(
                    _insert(table), {key_column: key, **values, **(on_insert or {})}
                ).inserted_primary_key
                assert inserted is not None
                pk = inserted[0]
                cache[key] = (int(pk), dict(values))
                return int(pk), True, set(values)
            known = (int(found[0]), dict(zip(values, found[1:], strict=True)))
            cache[key] = known
        pk, current = known
        changed = {name: value for name, value in values.items() if current.get(name) != value}
        if changed:
            self.connection.execute(_update(table), {"row_pk": pk, **changed})
            current.update(changed)
        return pk, False, set(changed)

    def upsert_many(self, records: Sequence[InstanceRecord]) -> int:
        """Insert or replace ``records``; return how many were new.

        Instances not indexed yet go in with one statement, and the counts of their series
        and studies are bumped once each; the others are replaced one by one.
        """
        uids = [record.text("SOPInstanceUID") for record in records]
        if len(set(uids)) != len(uids):  # the same instance twice: in order, one by one
            return sum(self.upsert(record) for record in records)
        known: set[str] = set()
        for start in range(0, len(uids), _CHUNK):
            chunk = uids[start : start + _CHUNK]
            known.update(self.connection.execute(_KNOWN_INSTANCES, {"uids": chunk}).scalars())
        rows: list[dict[str, Any]] = []
        in_series: Counter[int] = Counter()
        in_study: Counter[int] = Counter()
        new = 0
        for record, uid in zip(records, uids, strict=True):
            if uid in known:
                new += self.upsert(record)
                continue
            series_pk, study_pk, values = self._parents(record)
            rows.append({"sop_instance_uid": uid, **values})
            in_series[series_pk] += 1
            in_study[study_pk] += 1
            new += 1
        if rows:
            self.connection.execute(_insert(instances), rows)
        for series_pk, count in in_series.items():
            self.connection.execute(_BUMP_SERIES, {"row_pk": series_pk, "added": count})
        for study_pk, count in in_study.items():
            self._bump_study(study_pk, series=0, instances=count)
        return new

    def upsert(self, record: InstanceRecord) -> bool:
        """Insert or replace one instance; return whether it was new."""
        series_pk, study_pk, values = self._parents(record)
        uid = record.text("SOPInstanceUID")
        return self._put(uid, series_pk, study_pk, values)

    def _parents(self, record: InstanceRecord) -> tuple[int, int, dict[str, Any]]:
        """Ensure the instance's patient, study and series rows; return the series and
        study keys and the instance's column values."""
        text = record.text
        patient_pk, _, _ = self._ensure(
            self._patients,
            patients,
            "patient_id",
            text("PatientID"),
            {
                "patient_name": text("PatientName") or None,
                "patient_name_key": _upper(text("PatientName")),
                "birth_date": _date(text("PatientBirthDate")),
                "sex": text("PatientSex") or None,
            },
        )
        study_pk, _, _ = self._ensure(
            self._studies,
            studies,
            "study_instance_uid",
            text("StudyInstanceUID"),
            {
                "patient_pk": patient_pk,
                "study_date": _date(text("StudyDate")),
                "study_time": text("StudyTime") or None,
                "study_time_key": normalize_time(text("StudyTime")) if text("StudyTime") else None,
                "accession_number": text("AccessionNumber") or None,
                "study_id": text("StudyID") or None,
                "referring_physician_name": text("ReferringPhysicianName") or None,
                "referring_physician_name_key": _upper(text("ReferringPhysicianName")),
                "study_description": text("StudyDescription") or None,
            },
            # A study stays with the organisation that sent it first: a later sender never
            # takes it over (nor sees it through the read scoping).
            {"organisation": record.organisation},
        )
        series_pk, new_series, changed = self._ensure(
            self._series,
            series,
            "series_instance_uid",
            text("SeriesInstanceUID"),
            {
                "study_pk": study_pk,
                "modality": text("Modality") or None,
                "series_number": record.values.get("SeriesNumber"),
                "series_description": text("SeriesDescription") or None,
            },
        )
        if new_series:
            self._bump_study(study_pk, series=1, instances=0)
        if "modality" in changed:
            self._refresh_modalities(study_pk)
        values = {
            "series_pk": series_pk,
            "study_pk": study_pk,
            "sop_class_uid": text("SOPClassUID") or None,
            "instance_number": record.values.get("InstanceNumber"),
            "rows": record.values.get("Rows"),
            "columns": record.values.get("Columns"),
            "number_of_frames": record.values.get("NumberOfFrames"),
            "transfer_syntax_uid": record.transfer_syntax_uid,
            "storage_key": record.storage_key,
            "size": record.size,
            "sha256": record.sha256,
            "dicom_json": record.metadata,
            "indexed_at": self.indexed_at,
        }
        return series_pk, study_pk, values

    def _put(self, uid: str, series_pk: int, study_pk: int, values: dict[str, Any]) -> bool:
        """Insert, replace or move the instance ``uid``; return whether it was new."""
        found = self.connection.execute(
            select(instances.c.pk, instances.c.series_pk).where(instances.c.sop_instance_uid == uid)
        ).first()
        if found is not None and found[1] == series_pk:
            self.connection.execute(
                instances.update().where(instances.c.pk == found[0]).values(**values)
            )
            return False
        if found is not None:  # the same instance moved to another series: move it
            self._remove(int(found[0]))
        self.connection.execute(instances.insert().values(sop_instance_uid=uid, **values))
        self.connection.execute(
            series.update()
            .where(series.c.pk == series_pk)
            .values(num_instances=series.c.num_instances + 1)
        )
        self._bump_study(study_pk, series=0, instances=1)
        return found is None

    def _bump_study(self, study_pk: int, *, series: int, instances: int) -> None:
        self.connection.execute(
            _BUMP_STUDY,
            {"row_pk": study_pk, "added_series": series, "added_instances": instances},
        )
        if instances > 0:
            self._stamp_received(study_pk)

    def _stamp_received(self, study_pk: int) -> None:
        """Record that the study received a new instance now (retention measures from it)."""
        now = int(time.time())
        stamped = self.connection.execute(_STAMP_RECEIVED, {"row_pk": study_pk, "now": now})
        if not stamped.rowcount:
            self.connection.execute(_insert(received), {"study_pk": study_pk, "received_at": now})

    def _refresh_modalities(self, study_pk: int) -> None:
        found = self.connection.execute(_STUDY_MODALITIES, {"row_pk": study_pk}).scalars()
        joined = "\\".join(sorted(str(m) for m in found))
        self.connection.execute(
            _update(studies), {"row_pk": study_pk, "modalities": joined or None}
        )

    def _remove(self, instance_pk: int) -> None:
        row = self.connection.execute(
            select(instances.c.series_pk, instances.c.study_pk).where(instances.c.pk == instance_pk)
        ).one()
        self.connection.execute(instances.delete().where(instances.c.pk == instance_pk))
        self.connection.execute(
            series.update()
            .where(series.c.pk == row[0])
            .values(num_instances=series.c.num_instances - 1)
        )
        self._bump_study(int(row[1]), series=0, instances=-1)
