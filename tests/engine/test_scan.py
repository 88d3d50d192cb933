"""Collecting identifying values for the cleaner: every depth, nothing changed, nothing big read."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian

from dicomveil.dicomio import read_instance
from dicomveil.engine.scan import collect_identifiers

BLOB = Tag(0x00091001)


def _write(path: Path, blob_bytes: int) -> Path:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.99.5.1.1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.99.5"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.99.5.1"
    ds.PatientName = "DOE^JANE"
    ds.PatientID = "PID77"
    ds.StudyDate = "20200101"
    ds.private_block(0x0009, "BIG VENDOR", create=True).add_new(0x01, "OB", bytes(blob_bytes))
    item = Dataset()
    item.PatientID = "OTHER88"
    item.PatientName = "ROE^RICHARD"
    ds.OtherPatientIDsSequence = Sequence([item])
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def test_collects_every_depth_without_converting_the_dataset(tmp_path: Path) -> None:
    ds = read_instance(_write(tmp_path / "small.dcm", 16)).dataset
    found = collect_identifiers(ds)
    assert {"DOE^JANE", "ROE^RICHARD"} <= set(found["names"])
    assert {"PID77", "OTHER88"} <= set(found["identifiers"])
    assert found["dates"] == ["20200101"]
    raw = ds._dict  # noqa: SLF001 - what the writer sees decides whether bytes are copied
    assert all(isinstance(elem, RawDataElement) for elem in raw.values())


def test_a_large_private_value_is_not_read(tmp_path: Path) -> None:
    """A vendor's blob cannot hold what is collected: it stays in the file, not in memory."""
    ds = read_instance(_write(tmp_path / "large.dcm", 64 * 1024 * 1024)).dataset
    assert ds._dict[BLOB].value is None  # noqa: SLF001 - deferred by the reader
    collect_identifiers(ds)
    assert ds._dict[BLOB].value is None  # noqa: SLF001
