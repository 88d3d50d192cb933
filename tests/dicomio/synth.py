"""Synthetic DICOM files for the dicomio tests and benchmark (built in code, fake PHI only)."""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
ENHANCED_MR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4.1")
_ROOT = "2.25.1234567890123456789"


def ct_header(index: int, rows: int = 512, cols: int = 512) -> Dataset:
    """Return a realistic CT image header (no pixel data) with planted fake PHI."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstanceCreationDate = "20240102"
    ds.InstanceCreationTime = "101112.123"
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = f"{_ROOT}.3.{index}"
    ds.StudyDate = "20240102"
    ds.SeriesDate = "20240102"
    ds.AcquisitionDate = "20240102"
    ds.ContentDate = "20240102"
    ds.StudyTime = "100000"
    ds.SeriesTime = "100500"
    ds.AcquisitionTime = "100501.5"
    ds.ContentTime = "100502"
    ds.AccessionNumber = "ACC-CANARY-0001"
    ds.Modality = "CT"
    ds.Manufacturer = "ACME Medical"
    ds.InstitutionName = "Canary General Hospital"
    ds.InstitutionAddress = "1 Canary Road, Springfield"
    ds.ReferringPhysicianName = "Referrer^Canary"
    ds.StationName = "CANARY-CT01"
    ds.StudyDescription = "CT CHEST CANARY"
    ds.SeriesDescription = "AXIAL 1.0 CANARY"
    ds.InstitutionalDepartmentName = "Radiology"
    ds.PerformingPhysicianName = "Performer^Canary"
    ds.OperatorsName = "Operator^Canary"
    ds.ManufacturerModelName = "Scanner 9000"
    ref = Dataset()
    ref.ReferencedSOPClassUID = CT_IMAGE_STORAGE
    ref.ReferencedSOPInstanceUID = f"{_ROOT}.3.{index + 100000}"
    ds.ReferencedImageSequence = Sequence([ref])
    code = Dataset()
    code.CodeValue = "CTCHEST"
    code.CodingSchemeDesignator = "99CANARY"
    code.CodeMeaning = "CT Chest canary"
    ds.ProcedureCodeSequence = Sequence([code])
    ds.PatientName = "Canary^Patient^Middle"
    ds.PatientID = "PID-CANARY-0001"
    ds.IssuerOfPatientID = "CANARY-HOSP"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.OtherPatientIDs = "OPID-CANARY"
    ds.PatientAge = "054Y"
    ds.PatientSize = "1.70"
    ds.PatientWeight = "70"
    ds.PatientAddress = "2 Canary Street"
    ds.EthnicGroup = "CANARY"
    ds.PatientComments = "Canary patient comment"
    ds.ContrastBolusAgent = "IOPAMIDOL"
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = "1.0"
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500"
    ds.DeviceSerialNumber = "SN-CANARY-42"
    ds.SoftwareVersions = "VA1.0"
    ds.ProtocolName = "CHEST ROUTINE CANARY"
    ds.ReconstructionDiameter = "350"
    ds.DistanceSourceToDetector = "1040"
    ds.DistanceSourceToPatient = "570"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "150"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "500"
    ds.XRayTubeCurrent = "200"
    ds.Exposure = "100"
    ds.FilterType = "FLAT"
    ds.GeneratorPower = "24"
    ds.FocalSpots = "1.2"
    ds.ConvolutionKernel = "B30f"
    ds.PatientPosition = "FFS"
    ds.StudyInstanceUID = f"{_ROOT}.1"
    ds.SeriesInstanceUID = f"{_ROOT}.2"
    ds.StudyID = "STUDY-CANARY"
    ds.SeriesNumber = 3
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = index + 1
    ds.ImagePositionPatient = [-175.0, -175.0, float(index)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.FrameOfReferenceUID = f"{_ROOT}.4"
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = float(index)
    ds.ImageComments = "Canary image comment"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.PixelSpacing = [0.68359375, 0.68359375]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.RequestingPhysician = "Requester^Canary"
    ds.RequestedProcedureDescription = "CT CHEST CANARY"
    ds.PerformedProcedureStepStartDate = "20240102"
    ds.PerformedProcedureStepStartTime = "100000"
    ds.PerformedProcedureStepID = "PPS-CANARY"
    ds.PerformedProcedureStepDescription = "CT CHEST CANARY"
    block = ds.private_block(0x0019, "ACME CT PRIVATE", create=True)
    block.add_new(0x10, "LO", "canary private text")
    block.add_new(0x11, "DS", "1.5")
    block.add_new(0x12, "OB", bytes(range(256)) * 4)
    block2 = ds.private_block(0x0029, "ACME CSA HEADER", create=True)
    block2.add_new(0x10, "OB", b"CANARY-CSA" * 400)
    return ds


def file_meta(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> FileMetaDataset:
    """Return a File Meta Information group for `ds`."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(ds.get("SOPClassUID", CT_IMAGE_STORAGE))
    meta.MediaStorageSOPInstanceUID = UID(ds.get("SOPInstanceUID", f"{_ROOT}.0"))
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = UID(f"{_ROOT}.9")
    meta.ImplementationVersionName = "SYNTH_1"
    meta.SourceApplicationEntityTitle = "CANARY_AE"
    return meta


def encode_meta(ds: Dataset, transfer_syntax: str) -> bytes:
    """Return preamble, ``DICM`` and the File Meta Information group for `ds`."""
    buf = DicomBytesIO()
    buf.is_little_endian = True
    buf.is_implicit_VR = False
    buf.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(buf, file_meta(ds, transfer_syntax), enforce_standard=True)
    return buf.getvalue()


def encode_header(ds: Dataset, *, implicit: bool = False, little: bool = True) -> bytes:
    """Return preamble + meta + `ds` encoded (no pixel data)."""
    ts = (
        "1.2.840.10008.1.2"
        if implicit
        else ("1.2.840.10008.1.2.1" if little else "1.2.840.10008.1.2.2")
    )
    body = DicomBytesIO()
    body.is_little_endian = little
    body.is_implicit_VR = implicit
    write_dataset(body, ds)
    return encode_meta(ds, ts) + body.getvalue()


def pixel_header(length: int, *, vr: bytes = b"OW", implicit: bool = False) -> bytes:
    """Return the tag/VR/length header of a native (7FE0,0010) element (little endian)."""
    if implicit:
        return struct.pack("<HHL", 0x7FE0, 0x0010, length)
    return struct.pack("<HH2sHL", 0x7FE0, 0x0010, vr, 0, length)


def write_ct_slice(path: Path, index: int, rows: int = 512, cols: int = 512) -> None:
    """Write one explicit VR little endian CT slice with pseudo-random 16-bit pixels."""
    header = encode_header(ct_header(index, rows, cols))
    nbytes = rows * cols * 2
    pixels = random.Random(index).randbytes(nbytes)
    path.write_bytes(header + pixel_header(nbytes) + pixels)


def write_ct_folder(folder: Path, count: int = 300) -> list[Path]:
    """Write `count` CT slices into `folder` and return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        p = folder / f"slice_{i:04d}.dcm"
        write_ct_slice(p, i)
        paths.append(p)
    return paths


def _frames(count: int, frame_size: int) -> Iterator[bytes]:
    rng = random.Random(7)
    block = rng.randbytes(frame_size)
    for i in range(count):
        yield block[i % 97 :] + block[: i % 97]


def write_multiframe(path: Path, frames: int, rows: int = 512, cols: int = 512) -> int:
    """Stream a large multi-frame instance to `path` without holding its pixels; return size."""
    ds = ct_header(0, rows, cols)
    ds.SOPClassUID = ENHANCED_MR_STORAGE
    ds.NumberOfFrames = frames
    header = encode_header(ds)
    frame_size = rows * cols * 2
    with path.open("wb") as fp:
        fp.write(header)
        fp.write(pixel_header(frames * frame_size))
        for frame in _frames(frames, frame_size):
            fp.write(frame)
        trailer = Dataset()
        trailer.add_new(0xFFFCFFFC, "OB", b"\0" * 16)
        body = DicomBytesIO()
        body.is_little_endian = True
        body.is_implicit_VR = False
        write_dataset(body, trailer)
        fp.write(body.getvalue())
        return fp.tell()


def write_encapsulated(path: Path, fragments: int, fragment_size: int = 1024) -> int:
    """Stream an RLE-syntax instance with many pixel fragments to `path`; return its size."""
    ds = ct_header(0, 64, 64)
    ds.NumberOfFrames = fragments
    header = encode_header(ds).replace(b"1.2.840.10008.1.2.1\0", b"1.2.840.10008.1.2.5\0", 1)
    item = struct.Struct("<HHL")
    with path.open("wb") as fp:
        fp.write(header)
        fp.write(struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF))
        fp.write(item.pack(0xFFFE, 0xE000, 0))  # empty basic offset table
        payload = random.Random(3).randbytes(fragment_size)
        for _ in range(fragments):
            fp.write(item.pack(0xFFFE, 0xE000, fragment_size))
            fp.write(payload)
        fp.write(item.pack(0xFFFE, 0xE0DD, 0))
        return fp.tell()
