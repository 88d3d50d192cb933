"""Fixtures for the index tests: one empty index per backend, and a way to make records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset

from dicomveil.index import InstanceRecord, StudyIndex, open_index
from dicomveil.index.records import dataset_json, indexed_values
from tests.conftest import create_postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server)])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StudyIndex]:
    """A new, empty index on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'index.sqlite'}"
    else:
        url = create_postgres_database(request.getfixturevalue("postgres_url"), "index")
    opened = open_index(url)
    try:
        yield opened
    finally:
        opened.close()


def make_dataset(**values: Any) -> Dataset:
    """A de-identified-looking header with defaults for every indexed attribute."""
    ds = Dataset()
    defaults: dict[str, Any] = {
        "PatientName": "PSEUDO^ONE",
        "PatientID": "P1",
        "StudyInstanceUID": "2.25.1",
        "StudyDate": "20200101",
        "StudyTime": "101500",
        "AccessionNumber": "A1",
        "StudyID": "S1",
        "ReferringPhysicianName": "",
        "StudyDescription": "CT CHEST",
        "SeriesInstanceUID": "2.25.1.1",
        "Modality": "CT",
        "SeriesNumber": 1,
        "SeriesDescription": "AXIAL",
        "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2",
        "SOPInstanceUID": "2.25.1.1.1",
        "InstanceNumber": 1,
        "Rows": 4,
        "Columns": 4,
    }
    defaults.update(values)
    for keyword, value in defaults.items():
        if value is not None:
            setattr(ds, keyword, value)
    return ds


def make_record(**values: Any) -> InstanceRecord:
    """An :class:`InstanceRecord` for :func:`make_dataset` ``(**values)``."""
    ds = make_dataset(**values)
    sop = str(ds.SOPInstanceUID)
    return InstanceRecord(
        values=indexed_values(ds),
        storage_key=f"{ds.PatientID}/{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{sop}.dcm",
        size=100,
        sha256="0" * 64,
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        metadata=dataset_json(ds, pixel_vr="OW"),
    )
