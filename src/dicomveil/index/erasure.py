"""Erasing studies from the archive: their index rows (instances, series, studies, and
patients left without a study) and the stored objects those rows point to.

Used by ``dicomveil erase --archive``. The studies are named by pseudonymous Study Instance
UIDs and pseudonymous patient ids (what the vault records), never by original values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete, exists, or_, select
from sqlalchemy.engine import Connection

from dicomveil.index.db import make_engine, map_index_errors, write_transaction
from dicomveil.index.schema import instances, patients, received, series, studies
from dicomveil.storage import open_store

__all__ = ["ArchiveErasure", "erase_archive"]


@dataclass(frozen=True, slots=True)
class ArchiveErasure:
    """What went from the archive (or would, in a dry run): counts only."""

    rows: dict[str, int] = field(default_factory=dict)
    objects: int = 0


def _study_pks(
    connection: Connection, study_uids: Sequence[str], patient_ids: Sequence[str]
) -> list[int]:
    of_patients = select(patients.c.pk).where(patients.c.patient_id.in_(list(patient_ids)))
    query = select(studies.c.pk).where(
        or_(
            studies.c.study_instance_uid.in_(list(study_uids)),
            studies.c.patient_pk.in_(of_patients),
        )
    )
    return [int(pk) for (pk,) in connection.execute(query)]


def erase_archive(
    index_url: str,
    storage_url: str,
    study_uids: Sequence[str],
    patient_ids: Sequence[str],
    *,
    dry_run: bool = False,
) -> ArchiveErasure:
    """Delete the archived studies ``study_uids`` and every study of ``patient_ids``.

    Objects are deleted before the index rows: an interrupted erasure leaves rows pointing at
    missing objects, and running it again finishes it.
    """
    engine = make_engine(index_url)
    store = open_store(storage_url)
    try:
        with map_index_errors("erasing studies"), write_transaction(engine) as connection:
            pks = _study_pks(connection, study_uids, patient_ids)
            keys = [
                str(key)
                for (key,) in connection.execute(
                    select(instances.c.storage_key).where(instances.c.study_pk.in_(pks))
                )
            ]
            owners = select(studies.c.patient_pk).where(studies.c.pk.in_(pks))
            patient_pks = [int(pk) for (pk,) in connection.execute(owners)]
            if dry_run:
                counted = {
                    instances.name: len(keys),
                    series.name: len(
                        connection.execute(
                            select(series.c.pk).where(series.c.study_pk.in_(pks))
                        ).all()
                    ),
                    studies.name: len(pks),
                }
                return ArchiveErasure(rows=counted, objects=len(keys))
            for key in keys:
                store.delete(key)
            connection.execute(delete(received).where(received.c.study_pk.in_(pks)))
            rows = {
                instances.name: connection.execute(
                    delete(instances).where(instances.c.study_pk.in_(pks))
                ).rowcount,
                series.name: connection.execute(
                    delete(series).where(series.c.study_pk.in_(pks))
                ).rowcount,
                studies.name: connection.execute(
                    delete(studies).where(studies.c.pk.in_(pks))
                ).rowcount,
            }
            orphan = ~exists().where(studies.c.patient_pk == patients.c.pk)
            rows[patients.name] = connection.execute(
                delete(patients).where(patients.c.pk.in_(patient_pks), orphan)
            ).rowcount
        return ArchiveErasure(rows={k: int(v or 0) for k, v in rows.items()}, objects=len(keys))
    finally:
        store.close()
        engine.dispose()
