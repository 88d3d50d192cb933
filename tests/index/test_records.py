"""Index records taken from de-identified files: indexed values and DICOM JSON metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from dicomveil.demo import write_demo_study
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.rules import compile_policy
from dicomveil.index import InstanceRecord, record_from_file
from dicomveil.index.records import BULK_PREFIX, dataset_json, indexed_values
from dicomveil.pipeline.files import deidentify_file
from dicomveil.profile.policy import Policy


def test_record_of_a_deidentified_file(tmp_path: Path) -> None:
    (source,) = write_demo_study(
        tmp_path / "in", patients=1, series_per_study=1, images_per_series=1
    )
    outcome = deidentify_file(
        source, tmp_path / "out", compile_policy(Policy()), PseudonymKeys(b"k" * 32)
    )
    assert outcome.status == "ok"
    output = tmp_path / "out" / outcome.output
    record = record_from_file(
        output, storage_key=outcome.output, size=outcome.size, sha256="a" * 64
    )
    ds = pydicom.dcmread(output)
    assert record.values["SOPInstanceUID"] == ds.SOPInstanceUID
    assert record.values["PatientID"] == ds.PatientID
    assert record.values["Rows"] == 64 and record.values["InstanceNumber"] == 1
    assert record.transfer_syntax_uid == ds.file_meta.TransferSyntaxUID
    document = json.loads(record.metadata)
    assert document["7FE00010"] == {"vr": "OW", "BulkDataURI": BULK_PREFIX + "7FE00010"}
    assert document["00080018"]["Value"] == [ds.SOPInstanceUID]
    original = pydicom.dcmread(source, stop_before_pixels=True)
    assert original.PatientID not in record.metadata
    assert str(original.PatientName) not in record.metadata


def test_long_binary_values_become_bulk_data() -> None:
    ds = Dataset()
    ds.SOPInstanceUID = "2.25.1"
    ds.add_new(0x00431029, "OB", b"\x01" * 5000)
    ds.add_new(0x00431030, "OB", b"\x02" * 10)
    document = json.loads(dataset_json(ds))
    assert document["00431029"] == {"vr": "OB", "BulkDataURI": BULK_PREFIX + "00431029"}
    assert "InlineBinary" in document["00431030"]
    assert "7FE00010" not in document


@pytest.mark.filterwarnings("ignore:Invalid value for VR IS")
def test_indexed_values_tolerate_odd_values() -> None:
    ds = Dataset()
    ds.SeriesNumber = ""
    ds.Modality = "CT"
    # an InstanceNumber that is no number, as read from a file (converted on access)
    ds[0x00200013] = RawDataElement(Tag(0x00200013), "IS", 4, b"abc ", 0, False, True)
    values = indexed_values(ds)
    assert values["SeriesNumber"] is None and values["InstanceNumber"] is None
    assert values["Modality"] == "CT" and values["PatientName"] is None
    assert "ModalitiesInStudy" not in values


def test_record_needs_the_uids() -> None:
    with pytest.raises(ValueError, match="SOPInstanceUID"):
        InstanceRecord(
            values={"StudyInstanceUID": "1", "SeriesInstanceUID": "2"},
            storage_key="k",
            size=1,
            sha256="",
            transfer_syntax_uid="",
            metadata="{}",
        )
