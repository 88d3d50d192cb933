"""``dicomveil export parquet DEST --org CODE`` (issue #14, tenants): only that organisation's
studies, series, instances and patients, read back by DuckDB; each organisation keeps its own
watermark, so NORTH's incremental export does not advance SOUTH's at the same destination."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dicomveil.cli.main import main
from dicomveil.export import read_watermark, watermark_key
from dicomveil.index import open_index
from dicomveil.storage import FileBlobStore
from tests.export.test_parquet import index_url, scan, study  # noqa: F401 - index_url: fixture

duckdb = pytest.importorskip("duckdb")  # CI installs it (dev group); a missing one fails there

_KEYS = {
    "instances": "study_instance_uid",
    "series": "study_instance_uid",
    "studies": "study_instance_uid",
    "patients": "patient_id",
}


def _of(organisation: str | None, n: int, images: int) -> list[Any]:
    return [replace(r, organisation=organisation) for r in study(n, images)]


def _exported(dest: Path) -> dict[str, set[str]]:
    """The distinct study UIDs (patient ids for patients) in each exported table."""
    connection = duckdb.connect()
    return {
        table: {
            str(v)
            for (v,) in connection.sql(
                f"SELECT DISTINCT {key} FROM {scan(str(dest), table)}"
            ).fetchall()
        }
        for table, key in _KEYS.items()
    }


def _export(dest: Path, org: str | None, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["export", "parquet", str(dest), *(["--org", org] if org else [])]) == 0
    return capsys.readouterr().out


def test_an_organisations_export_holds_only_its_studies(
    index_url: str,  # noqa: F811 - the fixture
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DICOMVEIL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DICOMVEIL_INDEX_URL", index_url)
    monkeypatch.setattr("dicomveil.cli.export._SETTLE_S", 0)  # PostgreSQL: no settling wait
    index = open_index(index_url)
    index.add(_of("NORTH", 1, 3) + _of("NORTH", 2, 2) + _of("SOUTH", 3, 4) + _of(None, 4, 1))
    north, south = tmp_path / "north", tmp_path / "south"

    printed = _export(north, "NORTH", capsys)
    assert "exported 5 instances, 2 series, 2 studies, 2 patients of NORTH" in printed
    assert _exported(north) == {
        "instances": {"2.25.1", "2.25.2"},
        "series": {"2.25.1", "2.25.2"},
        "studies": {"2.25.1", "2.25.2"},
        "patients": {"P1", "P2"},
    }

    # NORTH and SOUTH export to the same place: SOUTH's first export is whole, not cut
    # at NORTH's watermark; each organisation's watermark is its own.
    assert "exported 4 instances" in _export(north, "SOUTH", capsys)
    store = FileBlobStore(north, sidecars=False)
    assert read_watermark(store, "SOUTH") is not None and read_watermark(store) is None
    index.add(_of("NORTH", 5, 1) + _of("SOUTH", 6, 2))
    assert "exported 1 instances" in _export(north, "NORTH", capsys)
    assert "exported 6 instances" in _export(south, "SOUTH", capsys)  # a new place: whole
    assert "exported 2 instances" in _export(north, "SOUTH", capsys)  # 6 only
    assert _exported(south)["studies"] == {"2.25.3", "2.25.6"}
    assert _exported(north)["studies"] == {f"2.25.{n}" for n in (1, 2, 3, 5, 6)}

    everything = tmp_path / "all"  # without --org: every study, the organisations' and none
    assert "exported 13 instances" in _export(everything, None, capsys)
    assert _exported(everything)["studies"] == {f"2.25.{n}" for n in range(1, 7)}
    assert watermark_key("NORTH") == "_dicomveil_export.NORTH.json"
    index.close()


def test_a_bad_organisation_code_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DICOMVEIL_HOME", str(tmp_path / "home"))
    assert main(["export", "parquet", str(tmp_path / "o"), "--org", "../x"]) == 2
    assert "organisation code" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
