"""Turning identity records into sealed vault rows, and inserting them idempotently."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Executable

from dicomveil.engine.identity import IdentityRecord
from dicomveil.vault.crypto import VaultKey
from dicomveil.vault.models import OriginalStudy
from dicomveil.vault.schema import SEALED_TABLES, frames_of_reference, instances, series, studies
from dicomveil.vault.sealing import natural_column, patient_index, seal_row

__all__ = ["RowBuilder", "check_record", "insert_new"]


def check_record(record: IdentityRecord) -> None:
    """Raise :class:`ValueError` (naming the field, never a value) for a record the vault
    cannot keep; the pipeline refuses such an instance before writing it
    (:meth:`IdentityRecord.missing`)."""
    missing = record.missing()
    if missing == "key_id":
        raise ValueError("IdentityRecord without a pseudonym key id")
    if missing is not None:
        raise ValueError(f"IdentityRecord without a pseudonymous {missing}")


class RowBuilder:
    """Collect the sealed rows of a batch, one per pseudonymous UID and pseudonym key."""

    def __init__(self, key: VaultKey, run_id: str, now: datetime) -> None:
        self._key = key
        self._run = {"run_id": run_id, "recorded_at": now}
        self._rows: dict[str, dict[tuple[str, str], dict[str, Any]]] = {
            table.name: {} for table in SEALED_TABLES
        }

    def rows(self, table: Table) -> list[dict[str, Any]]:
        """The rows collected for ``table``."""
        return list(self._rows[table.name].values())

    def add(self, record: IdentityRecord) -> None:
        """Add the study, series and instance rows of one record (each sealed once)."""
        o, p, kid = record.original, record.pseudonymous, record.key_id
        study = OriginalStudy.from_identity(o).as_dicom()
        study["date_offset_days"] = str(record.date_offset_days)
        self._add(
            studies,
            {
                "pseudo_study_uid": p.study_instance_uid,
                "pseudonym_key_id": kid,
                "pseudo_study_id": p.study_id,
                "pseudo_patient_id": p.patient_id,
                "pseudo_accession": p.accession_number,
                **self._run,
            },
            study,
            lambda: patient_index(self._key, o.patient_id, o.issuer_of_patient_id),
        )
        self._add(
            series,
            {
                "pseudo_series_uid": p.series_instance_uid,
                "pseudonym_key_id": kid,
                "pseudo_study_uid": p.study_instance_uid,
            },
            {"SeriesInstanceUID": o.series_instance_uid},
        )
        self._add(
            instances,
            {
                "pseudo_sop_instance_uid": p.sop_instance_uid,
                "pseudonym_key_id": kid,
                "pseudo_series_uid": p.series_instance_uid,
                "pseudo_study_uid": p.study_instance_uid,
                **self._run,
            },
            {"SOPInstanceUID": o.sop_instance_uid},
        )
        if p.frame_of_reference_uid and o.frame_of_reference_uid:
            self._add(
                frames_of_reference,
                {
                    "pseudo_frame_of_reference_uid": p.frame_of_reference_uid,
                    "pseudonym_key_id": kid,
                    "pseudo_study_uid": p.study_instance_uid,
                },
                {"FrameOfReferenceUID": o.frame_of_reference_uid},
            )

    def _add(
        self,
        table: Table,
        row: dict[str, Any],
        original: dict[str, str],
        index: Callable[[], str] | None = None,
    ) -> None:
        bucket = self._rows[table.name]
        natural = (str(row[natural_column(table)]), str(row["pseudonym_key_id"]))
        if natural in bucket:
            return
        row["vault_key_id"] = self._key.id
        if index is not None:
            row["patient_index"] = index()
        row["sealed"] = seal_row(self._key, table, row, original)
        bucket[natural] = row


@cache
def _insert_new(dialect_name: str, table: Table) -> Executable:
    # The dialect's own INSERT (SQLite's and PostgreSQL's both have ON CONFLICT DO NOTHING),
    # imported when that dialect is in use only; built once (building costs more than
    # running it).
    dialect = importlib.import_module(f"sqlalchemy.dialects.{dialect_name}")
    statement: Executable = (
        dialect.insert(table)
        .on_conflict_do_nothing(index_elements=[natural_column(table), "pseudonym_key_id"])
        .returning(table.c.id)
    )
    return statement


def insert_new(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> int:
    """Insert ``rows``, skipping those whose pseudonymous key exists; return how many were new."""
    if not rows:
        return 0
    statement = _insert_new(connection.dialect.name, table)
    return len(connection.execute(statement, rows).all())
