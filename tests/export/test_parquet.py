"""``dicomveil export parquet`` (issue #15): the index as Parquet, read back by DuckDB.

Counts match the index, a second export adds only the new rows, ``--since`` overrides the
watermark, the files land in a folder or in S3 (moto), and no original value reaches any file:
studies with PHI planted go through the real ingest service first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from dicomveil.cli.main import main
from dicomveil.export import WATERMARK_KEY, export_parquet, read_watermark
from dicomveil.index import IndexCounts, open_index
from dicomveil.storage import FileBlobStore, open_store
from tests.conftest import create_postgres_database
from tests.index.conftest import make_record
from tests.support.cloud import AWS_OPTIONS, BUCKET

duckdb = pytest.importorskip("duckdb")  # CI installs it (dev group); a missing one fails there

TABLES = ("instances", "series", "studies", "patients")


def scan(root: str, table: str) -> str:
    """DuckDB's reader of one exported table (Hive partitions as a column)."""
    if table == "patients":
        return f"read_parquet('{root}/patients/*.parquet')"
    return f"read_parquet('{root}/{table}/*/*.parquet', hive_partitioning = true)"


def exported_counts(connection: Any, root: str) -> IndexCounts:
    """Distinct patients, studies, series and instances in the export under ``root``."""
    keys = {
        "patients": "patient_id",
        "studies": "study_instance_uid",
        "series": "series_instance_uid",
        "instances": "sop_instance_uid",
    }
    found = {
        table: connection.execute(
            f"SELECT count(DISTINCT {key}) FROM {scan(root, table)}"
        ).fetchone()[0]
        for table, key in keys.items()
    }
    return IndexCounts(found["patients"], found["studies"], found["series"], found["instances"])


def study(n: int, images: int, *, date: str | None = "20240301") -> list[Any]:
    return [
        make_record(
            PatientID=f"P{n}",
            StudyInstanceUID=f"2.25.{n}",
            SeriesInstanceUID=f"2.25.{n}.1",
            SOPInstanceUID=f"2.25.{n}.1.{i}",
            StudyDate=date,
            InstanceNumber=i,
        )
        for i in range(images)
    ]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server)])
def index_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.sqlite'}"
    return create_postgres_database(request.getfixturevalue("postgres_url"), "export")


def test_counts_match_and_a_second_export_adds_only_new_rows(
    index_url: str, tmp_path: Path
) -> None:
    index = open_index(index_url)
    index.add(study(1, 5) + study(2, 3, date="20240302") + study(3, 2, date=None))
    dest = tmp_path / "out"
    store = FileBlobStore(dest, sidecars=False)
    seen: list[tuple[int, int]] = []

    first = export_parquet(
        index_url, store, progress=lambda done, total: seen.append((done, total))
    )

    connection = duckdb.connect()
    assert (first.instances, first.series, first.studies, first.patients) == (10, 3, 3, 3)
    assert exported_counts(connection, str(dest)) == index.counts()
    assert seen[0] == (0, 10) and seen[-1] == (10, 10)
    dates = connection.execute(
        f"SELECT study_date, count(*) FROM {scan(str(dest), 'instances')} GROUP BY ALL ORDER BY 1"
    ).fetchall()
    assert [(str(d) if d else None, n) for d, n in dates] == [
        ("2024-03-01", 5),
        ("2024-03-02", 3),
        (None, 2),  # no study date: __HIVE_DEFAULT_PARTITION__, read as NULL
    ]

    index.add(study(1, 7)[5:] + study(4, 1))  # two more in study 1, one new study
    second = export_parquet(index_url, store)

    assert (second.instances, second.series, second.studies, second.patients) == (3, 2, 2, 2)
    assert (
        second.watermark
        > first.watermark
        == read_watermark(store) - (second.watermark - first.watermark)
    )
    total = connection.execute(f"SELECT count(*) FROM {scan(str(dest), 'instances')}").fetchone()
    assert total == (index.counts().instances,)  # no instance twice
    assert exported_counts(connection, str(dest)) == index.counts()
    latest = connection.execute(
        f"SELECT num_instances FROM {scan(str(dest), 'studies')} "
        "WHERE study_instance_uid = '2.25.1' ORDER BY exported_at DESC LIMIT 1"
    ).fetchone()
    assert latest == (7,)  # the study's current state is its latest row

    third = export_parquet(index_url, store)  # nothing new: nothing written
    assert (third.instances, third.files) == (0, 0)
    index.close()


def test_since_overrides_the_watermark(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'index.sqlite'}"
    index = open_index(url)
    index.add(study(1, 4))
    store = FileBlobStore(tmp_path / "out", sidecars=False)
    first = export_parquet(url, store)
    index.add(study(2, 2))

    again = export_parquet(url, store, since=0)  # everything indexed since 1970

    assert again.instances == 6
    assert read_watermark(store) == again.watermark > first.watermark
    only_new = export_parquet(url, FileBlobStore(tmp_path / "other"), since=first.watermark + 1)
    assert only_new.instances == 2
    index.close()


def test_an_index_made_before_indexed_at_is_upgraded_and_exported_whole(
    index_url: str, tmp_path: Path
) -> None:
    from sqlalchemy import create_engine

    open_index(index_url).add(study(1, 3))
    engine = create_engine(index_url)
    with engine.begin() as connection:  # as an older dicomveil left it
        connection.exec_driver_sql("DROP INDEX ix_index_instances_indexed_at")
        connection.exec_driver_sql("ALTER TABLE index_instances DROP COLUMN indexed_at")
    engine.dispose()

    result = export_parquet(index_url, FileBlobStore(tmp_path / "out", sidecars=False))

    assert result.instances == 3  # rows without indexed_at go with the first export
    index = open_index(index_url)  # upgraded once: opening again changes nothing
    index.add(study(2, 1))
    assert export_parquet(index_url, FileBlobStore(tmp_path / "out")).instances == 1
    index.close()


def test_round_trip_to_s3(s3_endpoint: str, tmp_path: Path) -> None:
    import boto3

    url = f"sqlite:///{tmp_path / 'index.sqlite'}"
    index = open_index(url)
    index.add(study(1, 4) + study(2, 2, date="20231231"))
    prefix = f"export-{tmp_path.name}"
    with open_store(f"s3://{BUCKET}/{prefix}", endpoint_url=s3_endpoint, **AWS_OPTIONS) as store:
        result = export_parquet(url, store)
        assert store.head(WATERMARK_KEY) is not None
    client = boto3.client("s3", endpoint_url=s3_endpoint, **AWS_OPTIONS)
    local = tmp_path / "copy"
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/")["Contents"]
    for item in listed:  # DuckDB reads s3:// only through its httpfs extension: copy back
        target = local / item["Key"].removeprefix(prefix + "/")
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(BUCKET, item["Key"], str(target))
    client.close()
    assert result.files == len(listed) - 1  # and the watermark
    assert exported_counts(duckdb.connect(), str(local)) == index.counts()
    index.close()


# -- end to end: PHI planted, the real ingest service, the command line ---------------------

PLANTED = {
    "PatientName": "ZZPHINAME^PLANTED",
    "PatientID": "ZZPHIID4711",
    "AccessionNumber": "ZZPHIACC",
    "InstitutionName": "ZZPHIINSTITUTION",
    "ReferringPhysicianName": "ZZPHIREFERRER",
    "OtherPatientIDs": "ZZPHIOTHERID",
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, list[str]]]:
    """A state folder whose index holds a study ingested from originals with PHI planted;
    yields it and the original values (planted strings and the originals' UIDs)."""
    from dicomveil.demo import write_demo_study
    from dicomveil.pipeline.ingest import Origin
    from dicomveil.runtime import Runtime
    from dicomveil.settings import CoreSettings

    for name in ("DICOMVEIL_KEY", "DICOMVEIL_VAULT_KEY", "DICOMVEIL_AUDIT_KEY"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    key = tmp_path / "key"
    key.write_text("export-test-pseudonym-key-0123456789abcdef")
    paths = write_demo_study(tmp_path / "in", patients=1, series_per_study=2, images_per_series=3)
    originals = list(PLANTED.values())
    for path in paths:
        ds = pydicom.dcmread(path)
        for keyword, value in PLANTED.items():
            setattr(ds, keyword, value)
        originals += [str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)]
        ds.save_as(path)
    settings = CoreSettings(home=home, key_file=key, deid_processes=1)
    origin = Origin(entry="dimse", actor="ae:TESTSCU", calling_ae="TESTSCU", peer="127.0.0.1")
    with Runtime.open(settings) as runtime:
        assert all(r.ok for r in runtime.ingest.ingest(paths, origin))
    monkeypatch.setenv("DICOMVEIL_HOME", str(home))
    monkeypatch.delenv("DICOMVEIL_INDEX_URL", raising=False)
    yield home, sorted(set(originals))


def test_command_line_exports_no_original_value(
    home: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, originals = home
    dest = tmp_path / "analytics"

    assert main(["export", "parquet", str(dest)]) == 0

    index = open_index(f"sqlite:///{folder / 'index.sqlite'}")
    connection = duckdb.connect()
    assert exported_counts(connection, str(dest)) == index.counts()
    assert index.counts().instances == 6
    index.close()
    text = []
    for table in TABLES:  # every value of every row, as text
        text += [
            repr(row)
            for row in connection.execute(f"SELECT * FROM {scan(str(dest), table)}").fetchall()
        ]
    values = "\n".join(text)
    raw = b"".join(p.read_bytes() for p in dest.rglob("*") if p.is_file())
    names = "\n".join(str(p.relative_to(dest)) for p in dest.rglob("*"))
    printed = capsys.readouterr()
    for original in originals:
        assert original not in values
        assert original.encode() not in raw
        assert original not in names
        assert original not in printed.out + printed.err
    assert "exported 6 instances" in printed.out

    assert main(["export", "parquet", str(dest)]) == 0  # nothing new
    assert "exported 0 instances" in capsys.readouterr().out


def test_command_line_refuses_a_bad_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DICOMVEIL_HOME", str(tmp_path / "home"))
    assert main(["export", "parquet", str(tmp_path / "o"), "--since", "last tuesday"]) == 2
    assert "ISO 8601" in capsys.readouterr().err
