"""Instances built to probe the byte-level fast path: each differs from an ordinary CT image
in one way the fast path must reproduce exactly (or leave to the reference path).

``write_cases(folder)`` writes them all and returns their paths. Every value is synthetic.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from tests.canary import build_canary_dataset

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ROOT = "1.2.826.0.1.3680043.99.7"


def base() -> Dataset:
    """A small CT image with the usual identifying attributes and a few sequences."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CT_IMAGE
    ds.SOPInstanceUID = f"{ROOT}.1.1.1"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20210304"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC0042"
    ds.Modality = "CT"
    ds.Manufacturer = "SYNTHETIC"
    ds.InstitutionName = "General Hospital"
    ds.ReferringPhysicianName = "WHO^DOCTOR"
    ds.StationName = "CT01"
    ds.StudyDescription = "Chest for DOE"
    ref = Dataset()
    ref.ReferencedSOPClassUID = CT_IMAGE
    ref.ReferencedSOPInstanceUID = f"{ROOT}.1.1.0"
    ds.ReferencedImageSequence = Sequence([ref])
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "113040", "DCM", "Lossy"
    ds.DerivationCodeSequence = Sequence([code])
    ds.PatientName = "DOE^JOHN"
    ds.PatientID = "PID0042"
    ds.IssuerOfPatientID = "HOSP"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "M"
    other = Dataset()
    other.PatientID = "OTHER77"
    other.IssuerOfPatientID = "ELSEWHERE"
    ds.OtherPatientIDsSequence = Sequence([other])
    ds.PatientAge = "051Y"
    ds.StudyInstanceUID = f"{ROOT}.1"
    ds.SeriesInstanceUID = f"{ROOT}.1.1"
    ds.StudyID = "STUDY42"
    ds.SeriesNumber, ds.InstanceNumber = "1", "1"
    ds.FrameOfReferenceUID = f"{ROOT}.9"
    block = ds.private_block(0x0009, "SYNTHETIC PRIVATE", create=True)
    block.add_new(0x01, "LO", "PRIVATE VALUE")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = bytes(range(32))
    return ds


def _write(path: Path, ds: Dataset, syntax: UID = ExplicitVRLittleEndian) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", CT_IMAGE)
    meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", f"{ROOT}.0")
    meta.TransferSyntaxUID = syntax
    ds.file_meta = meta
    dcmwrite(path, ds, enforce_file_format=True)
    return path


def _undefined(ds: Dataset) -> None:
    """Make every sequence and item of ``ds`` undefined length, at every depth."""
    for elem in ds:
        if elem.VR == "SQ":
            elem.is_undefined_length = True
            for item in elem.value:
                item.is_undefined_length_sequence_item = True
                _undefined(item)


def _latin1() -> Dataset:
    ds = base()
    ds.PatientName = "MÜLLER^JÜRGEN"
    ds.AccessionNumber = "ÄCC1"
    ds.OtherPatientIDsSequence[0].PatientName = "MÜLLER^J"
    return ds


def _utf8() -> Dataset:
    ds = base()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "ÑOÑO^JOSÉ"
    ds.InstitutionName = "Hôpital Général"
    return ds


def _no_patient() -> Dataset:
    ds = base()
    del ds.PatientID, ds.PatientName, ds.IssuerOfPatientID
    return ds


def _name_only() -> Dataset:
    ds = base()
    ds.PatientID = ""
    return ds


def _nested_same_patient() -> Dataset:
    ds = base()
    other = Dataset()
    other.PatientName = "DOE^JOHN"
    other.PatientID = "PID0042"
    ds.OtherPatientIDsSequence.append(other)
    name_only = Dataset()
    name_only.PatientName = "ROE^JANE"
    ds.OtherPatientIDsSequence.append(name_only)
    return ds


def _padding() -> Dataset:
    ds = base()
    ds[0x00100010] = DataElement(0x00100010, "PN", "DOE^JOHN  ")
    ds[0x00100020] = DataElement(0x00100020, "LO", "PID0042\0\0")
    ds[0x00080050] = DataElement(0x00080050, "SH", "  ACC0042")
    return ds


def _odd_modality() -> Dataset:
    ds = base()
    ds[0x00080060] = DataElement(0x00080060, "CS", " CT ")
    return ds


def _ultrasound(burned_in: str) -> Callable[[], Dataset]:
    def build() -> Dataset:
        ds = base()
        ds.Modality = "US"
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
        if burned_in:
            ds.BurnedInAnnotation = burned_in
        return ds

    return build


def _private() -> Dataset:
    ds = base()
    safe = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    safe.add_new(0x0C, "IS", "1000")
    safe.add_new(0x0D, "CS", "DIRECTIONAL")
    inner = Dataset()
    inner.PatientName = "PRIVATE^NESTED"
    block = ds.private_block(0x0011, "OTHER VENDOR", create=True)
    block.add_new(0x01, "SQ", Sequence([inner]))
    ds.add_new(0x00291001, "LO", "NO CREATOR")  # an element whose block has no creator
    ds.add_new(0x00310001, "LO", "BELOW BLOCKS")
    return ds


def _method_present() -> Dataset:
    ds = base()
    ds.PatientIdentityRemoved = "NO"
    ds.DeidentificationMethod = "SOMETHING ELSE"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "113100", "DCM", "Basic"
    ds.DeidentificationMethodCodeSequence = Sequence([code])
    return ds


def _multi_uid() -> Dataset:
    ds = base()
    ds.add_new(0x00081199, "SQ", Sequence())
    ref = Dataset()
    ref.ReferencedSOPClassUID = CT_IMAGE
    ref.ReferencedSOPInstanceUID = ""
    ds.ReferencedImageSequence.append(ref)
    ds.add_new(0x00209161, "UI", [f"{ROOT}.5", f"{ROOT}.6"])  # Concatenation UID, two values
    return ds


def _unknown_vr() -> Dataset:
    ds = base()
    ds[0x00101010] = DataElement(0x00101010, "UN", b"051Y")  # Patient's Age sent as UN
    ds.add_new(0x00431001, "UN", b"VENDOR")  # a private element sent as UN
    return ds


def _group_lengths() -> Dataset:
    ds = base()
    ds.add_new(0x00080000, "UL", 0)
    ds.add_new(0x00100000, "UL", 0)
    return ds


def _no_pixels() -> Dataset:
    ds = base()
    del ds.PixelData
    return ds


def _canary() -> Dataset:
    ds, _ = build_canary_dataset()
    ds.SOPInstanceUID = f"{ROOT}.3.3"
    ds.StudyInstanceUID = f"{ROOT}.3"
    ds.SeriesInstanceUID = f"{ROOT}.3.1"
    ds.BitsAllocated = 16
    ds.add_new(0x7FE00010, "OW", bytes(16))
    return ds


def _canary_without_document() -> Dataset:
    """The canary minus its encapsulated document (which the fast path leaves alone)."""
    ds = _canary()
    del ds[0x00420011]
    return ds


def _big_header() -> Dataset:
    ds = base()
    block = ds.private_block(0x0029, "SYNTHETIC CSA", create=True)
    block.add_new(0x10, "OB", bytes(200_000))  # past the first read
    return ds


def _dates() -> Dataset:
    """Dates in every form a shift must read and write as pydicom does: several values, a
    blank value, ACR-NEMA dots, padding, DT with fraction and offset, nested."""
    ds = base()
    ds.add(DataElement(0x00080023, "DA", "20210304\\\\20200229"))  # ContentDate: 3 values
    ds.add(DataElement(0x00080021, "DA", "2021.03.04"))  # SeriesDate, old form
    ds.add(DataElement(0x0008002A, "DT", "20210304101500.123456+0100"))  # AcquisitionDateTime
    ds.add(DataElement(0x00181012, "DA", "20210305 "))  # DateOfSecondaryCapture, padded
    ds.add(DataElement(0x00100030, "DA", "19700101"))
    # PerformedProcedureStepStartDate inside an item that is kept
    ds.ReferencedImageSequence[0].add(DataElement(0x00400244, "DA", "20210303"))
    return ds


def _unparseable_date() -> Dataset:
    ds = base()
    ds.add(DataElement(0x00080022, "DA", "yesterday"))  # AcquisitionDate
    item = Dataset()
    item.add(DataElement(0x00404050, "DT", "2021"))  # year only: cannot be shifted exactly
    ds.RequestAttributesSequence = Sequence([item])
    return ds


BUILDERS: dict[str, Callable[[], Dataset]] = {
    "base": base,
    "latin1": _latin1,
    "utf8": _utf8,
    "no-patient": _no_patient,
    "name-only": _name_only,
    "nested-same-patient": _nested_same_patient,
    "padding": _padding,
    "odd-modality": _odd_modality,
    "us": _ultrasound(""),
    "us-burned-in-no": _ultrasound("NO"),
    "us-burned-in-yes": _ultrasound("YES"),
    "private": _private,
    "method-present": _method_present,
    "multi-uid": _multi_uid,
    "unknown-vr": _unknown_vr,
    "group-lengths": _group_lengths,
    "no-pixels": _no_pixels,
    "canary": _canary,
    "canary-without-document": _canary_without_document,
    "big-header": _big_header,
    "dates": _dates,
    "unparseable-date": _unparseable_date,
}


def _reserved_bytes(path: Path) -> None:
    """Set the reserved bytes of the first OB header (the reference writer zeroes them)."""
    data = bytearray(path.read_bytes())
    at = data.find(b"OB\0\0", 132 + 200)
    if at >= 0:
        data[at + 2 : at + 4] = b"\x01\x00"
    path.write_bytes(bytes(data))


def _trailing_padding(path: Path) -> None:
    with path.open("ab") as handle:
        handle.write(bytes(16))


def write_cases(folder: Path) -> list[Path]:
    """Write every case (explicit, implicit, undefined lengths, byte-level oddities)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for name, build in BUILDERS.items():
        paths.append(_write(folder / f"{name}.dcm", build()))
        paths.append(_write(folder / f"{name}-implicit.dcm", build(), ImplicitVRLittleEndian))
        undefined = build()
        _undefined(undefined)
        paths.append(_write(folder / f"{name}-undefined.dcm", undefined))
    for name, change in (
        ("reserved", _reserved_bytes),
        ("trailing", _trailing_padding),
    ):
        path = _write(folder / f"{name}.dcm", base())
        change(path)
        paths.append(path)
    return paths
