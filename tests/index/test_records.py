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
from tests.dicomio.conftest import pydicom_files


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


def _both_ways(path: Path) -> tuple[object, object]:
    """The indexed values of ``path`` through the quick path and through pydicom."""
    from dicomveil.dicomio import read_instance
    from dicomveil.errors import DicomveilError
    from dicomveil.index.records import _values_from_head

    quick = _values_from_head(path)
    try:
        instance = read_instance(path)
    except DicomveilError:
        return quick, None
    return quick, (indexed_values(instance.dataset), str(instance.transfer_syntax))


@pytest.mark.filterwarnings("ignore")
def test_quick_values_equal_pydicom_on_every_pydicom_file() -> None:
    quick_taken = 0
    for path in pydicom_files():
        quick, reference = _both_ways(path)
        if quick is None:
            continue
        quick_taken += 1
        assert quick == reference, path.name
    assert quick_taken >= 100  # the quick path serves most files


_ODD = {
    "PatientName": ("PN", b"Doe^John\0\0"),
    "PatientID": ("LO", b"  ID 7  "),
    "StudyDate": ("DA", b"20200101\\20200102"),
    "StudyTime": ("TM", b"101010.5 "),
    "AccessionNumber": ("SH", b"A\\B"),
    "Modality": ("CS", b""),
    "SeriesNumber": ("IS", b" +3 "),
    "InstanceNumber": ("IS", b"1.5 "),
    "NumberOfFrames": ("IS", b"1e1 "),
    "StudyDescription": ("LO", b"tab\there"),
    "SeriesDescription": ("LO", b"\x1b$B;3ED\x1b(B"),
    "StudyID": ("SH", b"x\0"),
}


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("charset", [None, "ISO_IR 100", "ISO 2022 IR 87", "ISO_IR 192"], ids=str)
@pytest.mark.filterwarnings("ignore")
def test_quick_values_equal_pydicom_on_odd_values(
    tmp_path: Path, implicit: bool, charset: str | None
) -> None:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "2.25.11"
    ds.StudyInstanceUID = "2.25.12"
    ds.SeriesInstanceUID = "2.25.13"
    for keyword, (vr, value) in _ODD.items():
        tag = Tag(keyword)
        ds[tag] = RawDataElement(tag, vr, len(value), value, 0, implicit, True)
    ds.add_new(0x00280010, "SS", 64)  # Rows with another VR than the dictionary's
    ds.add_new(0x00280011, "US", [64, 32])  # Columns with two values
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path = tmp_path / "odd.dcm"
    ds.save_as(path, enforce_file_format=True)
    quick, reference = _both_ways(path)
    assert quick is not None and quick == reference
    values = quick[0]
    assert isinstance(values, dict)
    assert values["StudyDate"] == "20200101" and values["SeriesNumber"] == 3
    assert values["InstanceNumber"] == 1 and values["PatientID"] == "ID 7"
