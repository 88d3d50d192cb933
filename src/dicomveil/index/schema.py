"""The index's tables: patients, studies, series, instances (SQLAlchemy Core).

Only pseudonymous values are stored. Person names are also kept upper-cased (``*_key``) so
case-insensitive matching uses an index; times are kept padded to ``HHMMSS.FFFFFF``
(``study_time_key``) so range matching is a string comparison. Counts of series and instances
are maintained on insert, so QIDO-RS returns them without counting. Each instance records when
it was last written (``indexed_at``, microseconds since the Unix epoch, UTC), the watermark of
the incremental analytics export; indexes made before that column existed get it added, empty,
when opened (:func:`upgrade`).

A study belongs to the organisation (tenant) whose token or calling AE sent it
(``organisation``; ``NULL``: no organisation, the single-tenant default). Schema 2 added that
column; :func:`dicomveil.index.migrations.migrate` brings a schema 1 index up to date.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
)

__all__ = [
    "SCHEMA_VERSION",
    "instances",
    "metadata",
    "patients",
    "received",
    "series",
    "settings",
    "studies",
    "upgrade",
]

SCHEMA_VERSION: Final = "2"

metadata = MetaData()

_UID = String(64)

patients = Table(
    "index_patients",
    metadata,
    Column("pk", Integer, primary_key=True),
    Column("patient_id", String(64), nullable=False, unique=True),
    Column("patient_name", String(324)),
    Column("patient_name_key", String(324)),
    Column("birth_date", String(8)),
    Column("sex", String(16)),
    Index("ix_index_patients_name_key", "patient_name_key"),
)

studies = Table(
    "index_studies",
    metadata,
    Column("pk", Integer, primary_key=True),
    Column("study_instance_uid", _UID, nullable=False, unique=True),
    Column("patient_pk", Integer, ForeignKey("index_patients.pk"), nullable=False),
    Column("study_date", String(8)),
    Column("study_time", String(16)),
    Column("study_time_key", String(13)),
    Column("accession_number", String(16)),
    Column("study_id", String(16)),
    Column("referring_physician_name", String(324)),
    Column("referring_physician_name_key", String(324)),
    Column("study_description", String(64)),
    Column("modalities", String(256)),
    Column("num_series", Integer, nullable=False, default=0),
    Column("num_instances", Integer, nullable=False, default=0),
    Column("organisation", String(32)),
    Index("ix_index_studies_patient", "patient_pk"),
    Index("ix_index_studies_organisation", "organisation"),
    Index("ix_index_studies_date", "study_date"),
    Index("ix_index_studies_accession", "accession_number"),
)

series = Table(
    "index_series",
    metadata,
    Column("pk", Integer, primary_key=True),
    Column("series_instance_uid", _UID, nullable=False, unique=True),
    Column("study_pk", Integer, ForeignKey("index_studies.pk"), nullable=False),
    Column("modality", String(16)),
    Column("series_number", BigInteger),
    Column("series_description", String(64)),
    Column("num_instances", Integer, nullable=False, default=0),
    Index("ix_index_series_study", "study_pk"),
    Index("ix_index_series_modality", "modality", "study_pk"),
)

instances = Table(
    "index_instances",
    metadata,
    Column("pk", Integer, primary_key=True),
    Column("sop_instance_uid", _UID, nullable=False, unique=True),
    Column("series_pk", Integer, ForeignKey("index_series.pk"), nullable=False),
    Column("study_pk", Integer, ForeignKey("index_studies.pk"), nullable=False),
    Column("sop_class_uid", _UID),
    Column("instance_number", BigInteger),
    Column("rows", Integer),
    Column("columns", Integer),
    Column("number_of_frames", Integer),
    Column("transfer_syntax_uid", _UID),
    Column("storage_key", String(1024), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("dicom_json", Text, nullable=False),
    Column("indexed_at", BigInteger),
    Index("ix_index_instances_series", "series_pk"),
    Index("ix_index_instances_study", "study_pk"),
    Index("ix_index_instances_class", "sop_class_uid"),
    Index("ix_index_instances_indexed_at", "indexed_at"),
)

received = Table(
    "index_study_received",
    metadata,
    Column("study_pk", Integer, ForeignKey("index_studies.pk"), primary_key=True),
    Column("received_at", BigInteger, nullable=False),
)
"""When the archive last received a new instance of a study (seconds since the epoch): the
age retention measures (:mod:`dicomveil.retention`). A table of its own, so an index made
before it gains it on open (``create_all``) without altering ``index_studies``; a study
without a row gets one from the first retention run that sees it."""

settings = Table(
    "index_settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)


def upgrade(connection: Connection) -> None:
    """Add the nullable columns added without a schema version (``indexed_at``) to an older index.

    Only nullable columns are ever added this way, so an older dicomveil still reads and
    writes the upgraded index (it leaves the new columns empty: instances an older version
    writes have no ``indexed_at``, so only a full export, to a new destination, takes them).
    """
    present = {column["name"] for column in inspect(connection).get_columns(instances.name)}
    if "indexed_at" not in present:
        # PostgreSQL: two nodes upgrading at once must not fail (SQLite's writers queue)
        guard = "IF NOT EXISTS " if connection.dialect.name == "postgresql" else ""
        connection.exec_driver_sql(
            f"ALTER TABLE {instances.name} ADD COLUMN {guard}indexed_at BIGINT"
        )
        connection.exec_driver_sql(  # SQL, not an Index(): that would join the table's
            "CREATE INDEX IF NOT EXISTS ix_index_instances_indexed_at"  # own, made twice
            f" ON {instances.name} (indexed_at)"
        )
