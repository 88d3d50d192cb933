"""``dicomveil export parquet``: the de-identified index as Parquet files, incrementally.

Layout under the destination (any storage URL: a folder, ``s3://``, ``gs://``, ``az://``)::

    instances/study_date=2024-03-01/part-<run>-<n>.parquet
    series/study_date=2024-03-01/part-<run>-<n>.parquet
    studies/study_date=2024-03-01/part-<run>-<n>.parquet
    patients/part-<run>-<n>.parquet
    _dicomveil_export.json            the watermark (ignored by Hive-style readers: "_")
    _dicomveil_export.NORTH.json      the watermark of an export of organisation NORTH only

Partitions are Hive-style ``study_date=YYYY-MM-DD`` folders (DuckDB ``hive_partitioning``,
Athena/Glue, BigQuery hive-partitioned external tables and Spark read them as they are); the
partition column is in the path only, not in the files. A study without a (valid) study date
goes to ``study_date=__HIVE_DEFAULT_PARTITION__``, which those readers take as NULL.

Each run exports the instances indexed since the previous run's watermark (or since
``--since``), and the current state of the series, studies and patients they belong to. An
instance re-indexed (replaced) is exported again; a study that gained instances is exported
again with its new counts. Every row carries ``exported_at`` (the run's instant): keep the
latest row per UID to read the current state. Files are written whole (a file store renames a
complete temporary file into place, object stores publish an object whole) and the watermark
is written last: a run that fails leaves the watermark where it was, so the next run exports
its instances again (the files the failed run did write stay; deduplicate by UID, latest
``exported_at``).

An export of one organisation (``--org CODE``, tenants) takes only the instances of the
studies that organisation sent (``index_studies.organisation``), with their series, studies and
patients; it keeps its own watermark, so one organisation's incremental export never advances
another's (nor the all-organisations one) at the same destination.

Only the index is read: pseudonymous values, never an original one.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from dicomveil._optional import require
from dicomveil.errors import ConfigError
from dicomveil.export import rows
from dicomveil.ports import BlobStore

__all__ = ["WATERMARK_KEY", "ExportResult", "export_parquet", "read_watermark", "watermark_key"]

WATERMARK_KEY: Final = "_dicomveil_export.json"
NULL_PARTITION: Final = "__HIVE_DEFAULT_PARTITION__"
_FORMAT_VERSION: Final = 1
_PARQUET: Final = "application/vnd.apache.parquet"
_BATCH: Final = 100_000
_PUTS: Final = 8


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What one export wrote (counts of rows per table, files, the new watermark)."""

    instances: int
    series: int
    studies: int
    patients: int
    files: int
    watermark: int


def watermark_key(organisation: str | None = None) -> str:
    """The watermark's key at the destination: :data:`WATERMARK_KEY`, or the organisation's
    own (``_dicomveil_export.CODE.json``) for an export of ``organisation`` only."""
    if organisation is None:
        return WATERMARK_KEY
    from dicomveil.tenants import check_code

    return WATERMARK_KEY.replace(".json", f".{check_code(organisation)}.json")


def read_watermark(store: BlobStore, organisation: str | None = None) -> int | None:
    """Return the destination's watermark (µs since the epoch, UTC) of the export of
    ``organisation`` (``None``: of every organisation), or ``None`` when no such export went
    there yet.

    Raises
    ------
    ConfigError
        The watermark object is not one this version wrote.
    """
    key = watermark_key(organisation)
    if store.head(key) is None:
        return None
    try:
        document = json.loads(store.get_bytes(key))
        if document.get("format_version") != _FORMAT_VERSION:
            raise ValueError("format_version")
        return int(document["watermark_us"])
    except (ValueError, TypeError, KeyError, AttributeError):
        raise ConfigError(f"{key} at the destination is not a dicomveil watermark") from None


def export_parquet(
    index_url: str,
    store: BlobStore,
    *,
    since: int | None = None,
    settle_us: int = 0,
    progress: Callable[[int, int], None] | None = None,
    organisation: str | None = None,
    batch: int = _BATCH,
    now: Callable[[], int] = lambda: time.time_ns() // 1000,
) -> ExportResult:
    """Export the index at ``index_url`` to ``store`` (see the module's documentation).

    Parameters
    ----------
    since:
        Export the instances indexed at or after this instant (µs since the epoch, UTC)
        instead of those after the destination's watermark.
    settle_us:
        Leave out instances indexed in the last ``settle_us`` µs (they go with the next run):
        on a database with concurrent writers (PostgreSQL) a transaction may commit rows
        stamped slightly before an earlier commit's; SQLite writers are serialised.
    progress:
        Called with ``(done, total)`` instances: once before the first batch, then after
        each batch is written.
    organisation:
        Export only the studies of this organisation (tenant), with its own watermark.

    Raises
    ------
    ConfigError
        pyarrow is not installed, the destination's watermark is not ours, or
        ``organisation`` is not an organisation code.
    StudyIndexError, StorageError
        The index or the destination failed (messages name the operation, never a value).
    """
    from dicomveil.index import open_index
    from dicomveil.index.db import make_engine

    pa = require("pyarrow", "the Parquet export", "analytics")
    open_index(index_url).close()  # creates or upgrades the schema (indexed_at)
    after = read_watermark(store, organisation)
    until = now() - settle_us
    window = rows.Window(after=after, since=since, until=until, organisation=organisation)
    run = f"{window.until}-{secrets.token_hex(4)}"
    writer = _Writer(pa, store, run, exported_at=window.until)
    engine = make_engine(index_url)
    touched: dict[str, set[int]] = {level: set() for level in rows.PARENTS}
    count = 0
    try:
        total = rows.count_instances(engine, window) if progress is not None else 0
        if progress is not None:
            progress(0, total)
        for found in rows.instance_batches(engine, window, batch):
            for row in found:
                for level, keys in touched.items():
                    keys.add(int(row[rows.PARENTS[level].key]))
            writer.write("instances", found, _INSTANCES)
            count += len(found)
            if progress is not None:
                progress(count, max(total, count))
        parents = {level: rows.parent_rows(engine, level, keys) for level, keys in touched.items()}
    finally:
        engine.dispose()
    writer.write("series", parents["series"], _SERIES)
    writer.write("studies", parents["studies"], _STUDIES)
    writer.write("patients", parents["patients"], _PATIENTS, partitioned=False)
    watermark = max(window.until, after or 0)
    document = {"format_version": _FORMAT_VERSION, "watermark_us": watermark, "last_run": run}
    key = watermark_key(organisation)
    store.put_bytes(key, json.dumps(document).encode(), content_type="application/json")
    return ExportResult(
        instances=count,
        series=len(parents["series"]),
        studies=len(parents["studies"]),
        patients=len(parents["patients"]),
        files=writer.files,
        watermark=watermark,
    )


def partition_of(study_date: str | None) -> str:
    """Return the Hive partition value of a study date kept as ``YYYYMMDD`` in the index."""
    if study_date is None or len(study_date) != 8 or not study_date.isascii():
        return NULL_PARTITION
    if not study_date.isdigit():
        return NULL_PARTITION
    return f"{study_date[:4]}-{study_date[4:6]}-{study_date[6:]}"


# -- the tables' columns: name -> (arrow type name, how to get the value from a row) --------

_Column = tuple[str, Callable[[Mapping[str, Any]], Any]]


def _get(name: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda row: row[name]


def _date(name: str) -> Callable[[Mapping[str, Any]], Any]:
    def read(row: Mapping[str, Any]) -> Any:
        value = partition_of(row[name])
        return None if value == NULL_PARTITION else value

    return read


def _split(name: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda row: row[name].split("\\") if row[name] else []


_INSTANCES: Final[dict[str, _Column]] = {
    "sop_instance_uid": ("string", _get("sop_instance_uid")),
    "series_instance_uid": ("string", _get("series_instance_uid")),
    "study_instance_uid": ("string", _get("study_instance_uid")),
    "patient_id": ("string", _get("patient_id")),
    "sop_class_uid": ("string", _get("sop_class_uid")),
    "instance_number": ("int64", _get("instance_number")),
    "rows": ("int32", _get("rows")),
    "columns": ("int32", _get("columns")),
    "number_of_frames": ("int32", _get("number_of_frames")),
    "transfer_syntax_uid": ("string", _get("transfer_syntax_uid")),
    "size": ("int64", _get("size")),
    "sha256": ("string", _get("sha256")),
    "indexed_at": ("timestamp", _get("indexed_at")),
}
_SERIES: Final[dict[str, _Column]] = {
    "series_instance_uid": ("string", _get("series_instance_uid")),
    "study_instance_uid": ("string", _get("study_instance_uid")),
    "modality": ("string", _get("modality")),
    "series_number": ("int64", _get("series_number")),
    "series_description": ("string", _get("series_description")),
    "num_instances": ("int32", _get("num_instances")),
}
_STUDIES: Final[dict[str, _Column]] = {
    "study_instance_uid": ("string", _get("study_instance_uid")),
    "patient_id": ("string", _get("patient_id")),
    "study_time": ("string", _get("study_time")),
    "accession_number": ("string", _get("accession_number")),
    "study_id": ("string", _get("study_id")),
    "referring_physician_name": ("string", _get("referring_physician_name")),
    "study_description": ("string", _get("study_description")),
    "modalities": ("list", _split("modalities")),
    "num_series": ("int32", _get("num_series")),
    "num_instances": ("int32", _get("num_instances")),
}
_PATIENTS: Final[dict[str, _Column]] = {
    "patient_id": ("string", _get("patient_id")),
    "patient_name": ("string", _get("patient_name")),
    "birth_date": ("date", _date("birth_date")),
    "sex": ("string", _get("sex")),
}


class _Writer:
    """Writes rows as Parquet files, one per table, partition and call."""

    def __init__(self, pa: Any, store: BlobStore, run: str, *, exported_at: int) -> None:
        self._pa = pa
        self._pq = require("pyarrow.parquet", "the Parquet export", "analytics")
        self._store = store
        self._run = run
        self._exported_at = exported_at
        self._calls = 0
        self.files = 0

    def _type(self, name: str) -> Any:
        pa = self._pa
        types = {
            "string": pa.string(),
            "int32": pa.int32(),
            "int64": pa.int64(),
            "timestamp": pa.timestamp("us", tz="UTC"),
            "date": pa.string(),  # cast to date32 below (from ISO text)
            "list": pa.list_(pa.string()),
        }
        return types[name]

    def write(
        self,
        table: str,
        found: Iterable[Mapping[str, Any]],
        columns: Mapping[str, _Column],
        *,
        partitioned: bool = True,
    ) -> None:
        groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        for row in found:
            groups[partition_of(row["study_date"]) if partitioned else ""].append(row)
        self._calls += 1
        jobs = []
        for partition, members in sorted(groups.items()):
            folder = f"{table}/study_date={partition}" if partitioned else table
            key = f"{folder}/part-{self._run}-{self._calls:05d}.parquet"
            jobs.append((key, self._table(members, columns)))
        # Files of distinct partitions are independent: encode and store several at once
        # (pyarrow and the stores' I/O release the GIL; fsync and uploads dominate).
        with ThreadPoolExecutor(max_workers=_PUTS, thread_name_prefix="dicomveil-export") as pool:
            for _ in pool.map(lambda job: self._put(*job), jobs):
                self.files += 1

    def _table(self, members: list[Mapping[str, Any]], columns: Mapping[str, _Column]) -> Any:
        pa = self._pa
        arrays = {}
        for name, (kind, read) in columns.items():
            array = pa.array([read(row) for row in members], type=self._type(kind))
            if kind == "date":
                array = array.cast(pa.date32())
            arrays[name] = array
        stamp = pa.array([self._exported_at] * len(members), type=pa.int64())
        arrays["exported_at"] = stamp.cast(pa.timestamp("us", tz="UTC"))
        return pa.table(arrays)

    def _put(self, key: str, table: Any) -> None:
        sink = self._pa.BufferOutputStream()
        self._pq.write_table(table, sink, compression="zstd")
        data = sink.getvalue().to_pybytes()
        self._store.put_bytes(key, data, content_type=_PARQUET)
