"""The benchmark corpus of issue 3, built in code, the same bytes for the same arguments.

    .venv/bin/python benchmarks/corpus.py DEST [--files 2000 | --scale 1.0]
    .venv/bin/python benchmarks/corpus.py --big PATH [--big-mb 2048]

The default corpus is 2,000 files and about 1 GB, the mix the issue measured:

=========  =====  =====================================================================
kind       share  what
=========  =====  =====================================================================
ct          88 %  CT Image Storage, 512x512 16-bit, Explicit VR Little Endian (0.5 MB)
mr           6 %  MR Image Storage, 256x256 16-bit, Explicit VR Little Endian
mr-j2k       3 %  MR Image Storage, 256x256 16-bit, JPEG 2000 Lossless (encapsulated)
us           2 %  Ultrasound Image Storage, 480x640 RGB, Explicit VR Little Endian
us-jpeg      1 %  Ultrasound Multi-frame Image Storage, 30 JPEG Baseline frames
=========  =====  =====================================================================

Every file carries a realistic header full of fake PHI: patient names (some with Latin-1
letters), IDs, dates and times, addresses, physicians, free text, nested sequences (request
attributes, other patient IDs, procedure codes, contributing equipment, source images) and
three private blocks (identifying values, acquisition numbers, an opaque "CSA-like" blob).
Files are laid out as a hospital export would be, named after the patient.

JPEG 2000 frames are encoded with pydicom and pylibjpeg-openjpeg when installed; otherwise
the frame of pydicom's ``JPEG2000.dcm`` test file is reused. JPEG Baseline frames are always
the frame of pydicom's ``SC_rgb_jpeg_dcmtk.dcm`` test file (so no encoder is needed).

:func:`write_big_multiframe` streams a single multi-frame instance of any size (2 GiB for the
memory test) to disk frame by frame; it never holds more than a few MB.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import math
import random
import shutil
import struct
import sys
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit

__all__ = [
    "DEFAULT_FILES",
    "KINDS",
    "CorpusInfo",
    "Kind",
    "build_corpus",
    "ensure_big",
    "ensure_corpus",
    "plan",
    "write_big_multiframe",
]

#: Files in the issue's corpus.
DEFAULT_FILES = 2000
#: Bumped whenever the content changes in a way the source hash would not show.
CORPUS_FORMAT = 1
MANIFEST = "corpus.json"

_ROOT = "1.2.826.0.1.3680043.10.1234.3"  # an example root for synthetic benchmark data
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTIFRAME_STORAGE = "1.2.840.10008.5.1.4.1.1.3.1"
MF_GRAYSCALE_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"
_FAMILY = [
    "MÜLLER",
    "DUPONT",
    "ROSSI",
    "KOWALSKI",
    "NAKAMURA",
    "OKAFOR",
    "SILVA",
    "NOVÁK",
    "GARCÍA",
    "O'BRIEN",
    "VAN DER BERG",
    "LÆRKE",
]
_GIVEN = ["ERIKA", "JEAN-LUC", "GIULIA", "ANNA", "HARUTO", "CHIDI", "MARIA", "PETR", "SØREN"]
_STREETS = ["Linden Way", "Harbour Road", "Mill Lane", "Station Street", "Rue du Port"]
_CITIES = ["Springfield", "Shelbyville", "Ogdenville", "North Haverbrook"]
_DOCTORS = ["HOUSE^GREGORY", "WILSON^JAMES", "CUDDY^LISA", "FOREMAN^ERIC", "CAMERON^ALLISON"]
_TECHS = ["TECH^TERRY", "RADIOGRAPHER^RUTH", "SONO^SAM"]


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of file in the corpus and its share of the file count."""

    name: str
    share: float
    series_size: int
    series_per_study: int


KINDS = (
    Kind("ct", 0.88, 60, 2),
    Kind("mr", 0.06, 20, 3),
    Kind("mr-j2k", 0.03, 20, 1),
    Kind("us", 0.02, 10, 1),
    Kind("us-jpeg", 0.01, 5, 1),
)


@dataclass(frozen=True, slots=True)
class CorpusInfo:
    """What :func:`build_corpus` wrote."""

    root: str
    files: int
    bytes: int
    kinds: dict[str, int]
    j2k_encoder: str
    key: str = ""
    layout: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Patient:
    name: str
    patient_id: str
    birth_date: str
    sex: str
    address: str
    phone: str
    weight: str
    size: str


@dataclass(frozen=True, slots=True)
class _Study:
    patient: _Patient
    number: int
    date: str
    time: str
    accession: str
    uid: str
    physician: str


def plan(files: int) -> dict[str, int]:
    """Return how many files of each kind make up a corpus of ``files`` files."""
    if files < 1:
        raise ValueError("files must be at least 1")
    counts = dict.fromkeys((k.name for k in KINDS), 0)
    if files >= len(KINDS):
        for kind in KINDS[1:]:
            counts[kind.name] = max(1, round(files * kind.share))
    counts["ct"] = files - sum(counts.values())
    return counts


def _uid(*parts: int) -> str:
    value = ".".join([_ROOT, *(str(p) for p in parts)])
    if len(value) > 64:
        raise ValueError("UID longer than 64 characters")
    return value


def _patients(count: int, seed: int) -> list[_Patient]:
    rng = random.Random(f"patients:{seed}")
    result = []
    for index in range(count):
        family, given = rng.choice(_FAMILY), rng.choice(_GIVEN)
        middle = rng.choice(["", "A", "M", "J"])
        born = date(1935, 1, 1) + timedelta(days=rng.randrange(0, 80 * 365))
        result.append(
            _Patient(
                name=f"{family}^{given}^{middle}" if middle else f"{family}^{given}",
                patient_id=f"MRN{seed:02d}{index:07d}",
                birth_date=born.strftime("%Y%m%d"),
                sex=rng.choice("FMO"),
                address=(
                    f"{rng.randrange(1, 400)} {rng.choice(_STREETS)}, "
                    f"{rng.choice(_CITIES)} {rng.randrange(10000, 99999)}"
                ),
                phone=f"+1 555 {rng.randrange(1000000, 9999999)}",
                weight=f"{rng.randrange(45, 120)}",
                size=f"{rng.randrange(150, 200) / 100:.2f}",
            )
        )
    return result


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c if c.isalnum() else "_" for c in folded.replace("^", "_")).strip("_")


def _age(birth: str, on: str) -> str:
    years = int(on[:4]) - int(birth[:4]) - int(on[4:] < birth[4:])
    return f"{max(0, years):03d}Y"


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _csa_blob(patient: _Patient, study: _Study, size: int, rng: random.Random) -> bytes:
    """An opaque vendor blob with identifying text inside, like Siemens' CSA headers."""
    text = (
        f"SV10\x04\x03\x02\x01PatientName={patient.name};PatientID={patient.patient_id};"
        f"Accession={study.accession};Ref={study.physician};"
    ).encode("latin-1")
    filler = rng.randbytes(max(0, size - len(text)))
    blob = text + filler
    return blob + (b"\x00" if len(blob) % 2 else b"")


def _header(
    kind: str,
    study: _Study,
    series: int,
    instance: int,
    modality: str,
    sop_class: str,
    rng: random.Random,
) -> Dataset:
    """The identifying and descriptive part that every file carries."""
    patient = study.patient
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL" if modality == "CT" else "OTHER"]
    ds.InstanceCreationDate = study.date
    ds.InstanceCreationTime = study.time
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = _uid(study.number, series, instance)
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study.date
    ds.StudyTime = study.time
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = f"{study.time[:4]}{instance % 60:02d}"
    ds.AcquisitionDateTime = f"{study.date}{study.time}.{instance:06d}"
    ds.AccessionNumber = study.accession
    ds.Modality = modality
    ds.Manufacturer = "SYNTHETIC MEDICAL"
    ds.InstitutionName = "Springfield General Hospital"
    ds.InstitutionAddress = "1 Hospital Drive, Springfield"
    ds.ReferringPhysicianName = study.physician
    ds.ReferringPhysicianTelephoneNumbers = "+1 555 0100"
    ds.StationName = f"{modality}SCAN{study.number % 3 + 1:02d}"
    ds.StudyDescription = f"{modality} for {patient.name.replace('^', ' ')}"
    procedure = _code(f"P{modality}{study.number % 7}", "99SYNTH", f"{modality} routine")
    ds.ProcedureCodeSequence = Sequence([procedure])
    ds.SeriesDescription = f"{kind.upper()} series {series}"
    ds.InstitutionalDepartmentName = "Radiology"
    ds.PhysiciansOfRecord = study.physician
    ds.PerformingPhysicianName = rng.choice(_DOCTORS)
    ds.NameOfPhysiciansReadingStudy = rng.choice(_DOCTORS)
    ds.OperatorsName = rng.choice(_TECHS)
    ds.AdmittingDiagnosesDescription = f"Follow-up, seen by {study.physician.split('^')[0]}"
    ds.ManufacturerModelName = f"SYNTH-{modality} 9000"
    referenced_study = Dataset()
    referenced_study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    referenced_study.ReferencedSOPInstanceUID = _uid(study.number, 0, 1)
    ds.ReferencedStudySequence = Sequence([referenced_study])
    pps = Dataset()
    pps.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.3"
    pps.ReferencedSOPInstanceUID = _uid(study.number, 0, 2)
    ds.ReferencedPerformedProcedureStepSequence = Sequence([pps])
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.IssuerOfPatientID = "SPRINGFIELD GH"
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    other = Dataset()
    other.PatientID = f"NHS{patient.patient_id[3:]}"
    other.IssuerOfPatientID = "NATIONAL"
    other.TypeOfPatientID = "TEXT"
    qualifiers = Dataset()
    qualifiers.UniversalEntityID = "2.16.840.1.113883.2.1.4.1"
    qualifiers.UniversalEntityIDType = "ISO"
    other.IssuerOfPatientIDQualifiersSequence = Sequence([qualifiers])
    ds.OtherPatientIDsSequence = Sequence([other])
    ds.PatientAge = _age(patient.birth_date, study.date)
    ds.PatientSize = patient.size
    ds.PatientWeight = patient.weight
    ds.PatientAddress = patient.address
    ds.PatientTelephoneNumbers = patient.phone
    ds.AdditionalPatientHistory = f"Prior study {int(study.date[:4]) - 1}; allergic to iodine"
    ds.PatientComments = f"Call {patient.phone} before the appointment"
    ds.DeviceSerialNumber = f"SN-{448812 + study.number % 5}"
    ds.SoftwareVersions = ["VA20A", "SYNTH 1.0"]
    ds.ProtocolName = f"{modality} ROUTINE"
    ds.DateOfLastCalibration = "20191231"
    ds.TimeOfLastCalibration = "080000"
    ds.StudyInstanceUID = study.uid
    ds.SeriesInstanceUID = _uid(study.number, series)
    ds.StudyID = f"S{study.number}"
    ds.SeriesNumber = series
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = instance
    ds.ImageComments = f"Reviewed by {ds.NameOfPhysiciansReadingStudy}"
    request = Dataset()
    request.RequestedProcedureID = f"RP{study.number}"
    request.ScheduledProcedureStepID = f"SPS{study.number}"
    request.RequestedProcedureDescription = f"{modality} routine"
    request.ReasonForTheRequestedProcedure = f"Query lesion, {patient.name.split('^')[0]}"
    request.AccessionNumber = study.accession
    ds.RequestAttributesSequence = Sequence([request])
    ds.RequestingPhysician = study.physician
    ds.PerformedProcedureStepStartDate = study.date
    ds.PerformedProcedureStepStartTime = study.time
    ds.PerformedProcedureStepID = f"PPS{study.number}"
    ds.PerformedProcedureStepDescription = f"{modality} routine"
    contributing = Dataset()
    contributing.PurposeOfReferenceCodeSequence = Sequence(
        [_code("109103", "DCM", "Modifying Equipment")]
    )
    contributing.Manufacturer = "SYNTHETIC PACS"
    contributing.InstitutionName = "Springfield General Hospital"
    contributing.StationName = "PACS01"
    contributing.ContributionDateTime = f"{study.date}235959"
    contributing.ContributionDescription = "Archived"
    ds.ContributingEquipmentSequence = Sequence([contributing])
    if instance > 1:
        source = Dataset()
        source.ReferencedSOPClassUID = sop_class
        source.ReferencedSOPInstanceUID = _uid(study.number, series, instance - 1)
        source.PurposeOfReferenceCodeSequence = Sequence(
            [_code("121320", "DCM", "Uncompressed predecessor")]
        )
        ds.SourceImageSequence = Sequence([source])
    _private_blocks(ds, kind, study, rng)
    return ds


def _private_blocks(ds: Dataset, kind: str, study: _Study, rng: random.Random) -> None:
    patient = study.patient
    device = ds.private_block(0x0009, "SYNTHETIC DEVICE 1.0", create=True)
    device.add_new(0x01, "LO", patient.name.replace("^", " "))
    device.add_new(0x02, "LO", patient.patient_id)
    device.add_new(0x03, "DA", study.date)
    device.add_new(0x04, "DS", "1.5")
    nested = Dataset()
    nested.add_new(0x00090010, "LO", "SYNTHETIC DEVICE 1.0")
    nested.add_new(0x00091001, "LO", f"operator {ds.OperatorsName}")
    nested.add_new(0x00091002, "UI", study.uid)
    device.add_new(0x05, "SQ", Sequence([nested]))
    acquisition = ds.private_block(0x0019, "SYNTHETIC ACQ", create=True)
    acquisition.add_new(0x10, "DS", [f"{rng.uniform(0, 5):.3f}", "0.5"])
    acquisition.add_new(0x11, "US", rng.randrange(0, 1000))
    acquisition.add_new(0x12, "FD", [rng.uniform(-1, 1) for _ in range(3)])
    csa = ds.private_block(0x0029, "SYNTHETIC CSA HEADER", create=True)
    size = 6000 if kind.startswith("mr") else 2000
    csa.add_new(0x10, "OB", _csa_blob(patient, study, size, rng))
    csa.add_new(0x20, "LT", f"Protocol edited by {study.physician} for {patient.patient_id}")


class _Pixels:
    """Deterministic synthetic images; shapes are computed once and reused with noise."""

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        self._cache: dict[tuple[str, int], np.ndarray[Any, Any]] = {}
        self._noise: dict[tuple[int, int], np.ndarray[Any, Any]] = {}

    def _noise_tile(self, rows: int, columns: int) -> np.ndarray[Any, Any]:
        if (rows, columns) not in self._noise:
            self._noise[rows, columns] = self._rng.integers(0, 24, (rows, columns), dtype=np.int32)
        return self._noise[rows, columns]

    def _body(self, size: int, z: int, head: bool) -> np.ndarray[Any, Any]:
        key = ("head" if head else "body", size * 1000 + z % 32)
        if key not in self._cache:
            y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
            phase = (z % 32) / 32 * 2 * math.pi
            image = np.zeros((size, size), dtype=np.int32)
            if head:
                outer = ((x - 0.5) / (0.36 + 0.02 * math.sin(phase))) ** 2 + ((y - 0.5) / 0.44) ** 2
                image[outer < 1] = 1900  # scalp and bone
                image[outer < 0.85] = 900  # brain
                ventricle = ((x - 0.5) / 0.06) ** 2 + (
                    (y - 0.45) / (0.12 + 0.03 * math.cos(phase))
                ) ** 2
                image[ventricle < 1] = 300  # ventricles
            else:
                outer = ((x - 0.5) / (0.37 + 0.03 * math.sin(phase))) ** 2 + (
                    (y - 0.53) / (0.27 + 0.02 * math.cos(phase))
                ) ** 2
                image[outer < 1] = 1064  # soft tissue, +40 HU
                for centre in (0.33, 0.67):
                    lung = ((x - centre) / 0.12) ** 2 + (
                        (y - 0.5) / (0.17 + 0.02 * math.sin(phase))
                    ) ** 2
                    image[lung < 1] = 224  # lung, -800 HU
                spine = ((x - 0.5) / 0.05) ** 2 + ((y - 0.72) / 0.05) ** 2
                image[spine < 1] = 2024  # bone
            self._cache[key] = image
        return self._cache[key]

    def gray(self, size: int, z: int, *, head: bool) -> np.ndarray[Any, Any]:
        """A 16-bit slice (12 bits stored) of a body or head phantom."""
        noise = np.roll(self._noise_tile(size, size), z * 7, axis=1)
        return (self._body(size, z, head) + noise).astype("<u2")

    def ultrasound(self, rows: int, columns: int, frame: int) -> np.ndarray[Any, Any]:
        """An RGB ultrasound frame: a sector of speckle with a colour Doppler box."""
        key = ("us", rows * 10000 + columns)
        if key not in self._cache:
            y, x = np.mgrid[0:rows, 0:columns].astype(np.float32)
            radius = np.hypot(x - columns / 2, y + rows * 0.1)
            angle = np.abs(np.arctan2(x - columns / 2, y + rows * 0.1))
            sector = (radius < rows * 1.0) & (radius > rows * 0.15) & (angle < 0.75)
            speckle = self._rng.integers(20, 200, (rows, columns), dtype=np.int32)
            self._cache[key] = np.where(sector, speckle, 0)
        gray = np.roll(self._cache[key], frame * 3, axis=0).astype(np.uint8)
        rgb = np.stack([gray, gray, gray], axis=-1)
        top, left = rows // 3, columns // 2 - 40
        rgb[top : top + 60, left : left + 80, 0] = 200  # Doppler box, red
        rgb[top : top + 60, left : left + 80, 2] = (frame * 17) % 256
        return rgb


def _j2k_available() -> bool:
    return importlib.util.find_spec("openjpeg") is not None


def _test_frame(name: str) -> tuple[bytes, Dataset]:
    path = get_testdata_file(name)
    if path is None:
        raise FileNotFoundError(f"pydicom test file {name} is missing")
    source = pydicom.dcmread(path)
    frame = next(generate_frames(source.PixelData, number_of_frames=1))
    return frame, source


def _set_gray(ds: Dataset, rows: int, columns: int) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0


def _ct(ds: Dataset, instance: int, pixels: _Pixels) -> str:
    ds.ScanOptions = "HELICAL MODE"
    ds.SliceThickness = "1.25"
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = "360"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "160"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "500"
    ds.XRayTubeCurrent = "200"
    ds.Exposure = "100"
    ds.FilterType = "BODY FILTER"
    ds.ConvolutionKernel = "B30f"
    ds.PatientPosition = "FFS"
    ds.AnatomicRegionSequence = Sequence([_code("T-D3000", "SRT", "Chest")])
    ds.FrameOfReferenceUID = _uid(int(ds.StudyID[1:]), 0, 9)
    ds.PositionReferenceIndicator = ""
    ds.ImagePositionPatient = [-180.0, -180.0, -1.25 * instance]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = f"{-1.25 * instance:.2f}"
    ds.PixelSpacing = [0.703125, 0.703125]
    _set_gray(ds, 512, 512)
    ds.WindowCenter, ds.WindowWidth = "40", "400"
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
    ds.add_new(0x7FE00010, "OW", pixels.gray(512, instance, head=False).tobytes())
    return ExplicitVRLittleEndian


def _mr(ds: Dataset, instance: int, pixels: _Pixels, *, j2k: bool) -> str:
    ds.ScanningSequence = ["SE"]
    ds.SequenceVariant = ["SK", "SP"]
    ds.ScanOptions = ["PFP"]
    ds.MRAcquisitionType = "2D"
    ds.SliceThickness = "5"
    ds.RepetitionTime = "4000"
    ds.EchoTime = "90"
    ds.ImagingFrequency = "63.87"
    ds.MagneticFieldStrength = "1.5"
    ds.EchoTrainLength = "15"
    ds.FlipAngle = "150"
    ds.PatientPosition = "HFS"
    ds.FrameOfReferenceUID = _uid(int(ds.StudyID[1:]), 0, 8)
    ds.ImagePositionPatient = [-120.0, -120.0, 6.0 * instance]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.9375, 0.9375]
    _set_gray(ds, 256, 256)
    image = pixels.gray(256, instance, head=True)
    if not j2k:
        ds.add_new(0x7FE00010, "OW", image.tobytes())
        return ExplicitVRLittleEndian
    if _j2k_available():
        ds.compress(
            JPEG2000Lossless, image, encoding_plugin="pylibjpeg", generate_instance_uid=False
        )
        del ds.file_meta  # the caller writes the file meta
    else:
        frame, source = _test_frame("JPEG2000.dcm")
        ds.Rows, ds.Columns = source.Rows, source.Columns
        ds.BitsStored, ds.HighBit = source.BitsStored, source.HighBit
        ds.PixelRepresentation = source.PixelRepresentation
        ds.add_new(0x7FE00010, "OB", encapsulate([frame]))
        ds["PixelData"].is_undefined_length = True
    return JPEG2000Lossless


def _us_regions(rows: int, columns: int) -> Sequence:
    region = Dataset()
    region.RegionSpatialFormat = 1
    region.RegionDataType = 1
    region.RegionFlags = 2
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = columns - 1, rows - 1
    region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = region.PhysicalDeltaY = 0.02
    return Sequence([region])


def _us(ds: Dataset, instance: int, pixels: _Pixels) -> str:
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL"]
    ds.BurnedInAnnotation = "NO"
    ds.TransducerData = ["C5-1", "", ""]
    ds.SequenceOfUltrasoundRegions = _us_regions(480, 640)
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = 480, 640
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelRepresentation = 0
    ds.add_new(0x7FE00010, "OB", pixels.ultrasound(480, 640, instance).tobytes())
    return ExplicitVRLittleEndian


def _us_jpeg(ds: Dataset, instance: int, frames: int = 30) -> str:
    frame, source = _test_frame("SC_rgb_jpeg_dcmtk.dcm")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "CARDIAC"]
    ds.BurnedInAnnotation = "NO"
    ds.SequenceOfUltrasoundRegions = _us_regions(source.Rows, source.Columns)
    ds.NumberOfFrames = frames
    ds.FrameTime = "33.3"
    ds.CineRate = 30
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    for keyword in ("SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration"):
        setattr(ds, keyword, source[keyword].value)
    ds.Rows, ds.Columns = source.Rows, source.Columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = "17.401"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.add_new(0x7FE00010, "OB", encapsulate([frame] * frames))
    ds["PixelData"].is_undefined_length = True
    return JPEGBaseline8Bit


_MODALITY = {
    "ct": ("CT", CT_IMAGE_STORAGE),
    "mr": ("MR", MR_IMAGE_STORAGE),
    "mr-j2k": ("MR", MR_IMAGE_STORAGE),
    "us": ("US", US_IMAGE_STORAGE),
    "us-jpeg": ("US", US_MULTIFRAME_STORAGE),
}


def _studies(kind: Kind, count: int, patients: list[_Patient], seed: int) -> Iterator[_Study]:
    """Studies of one kind; patients are shared between kinds, as in a real archive."""
    per_study = kind.series_size * kind.series_per_study
    offset = [k.name for k in KINDS].index(kind.name)
    rng = random.Random(f"studies:{kind.name}:{seed}")
    for number in range(math.ceil(count / per_study)):
        patient = patients[(number * 7 + offset * 3) % len(patients)]
        day = date(2019, 1, 1) + timedelta(days=rng.randrange(0, 6 * 365))
        study_no = (offset + 1) * 100_000 + seed * 1000 + number
        yield _Study(
            patient=patient,
            number=study_no,
            date=day.strftime("%Y%m%d"),
            time=f"{rng.randrange(7, 20):02d}{rng.randrange(0, 60):02d}{rng.randrange(0, 60):02d}",
            accession=f"ACC{study_no:08d}",
            uid=_uid(study_no),
            physician=rng.choice(_DOCTORS),
        )


def _kind_files(
    kind: Kind, count: int, patients: list[_Patient], pixels: _Pixels, seed: int
) -> Iterator[tuple[str, Dataset, str]]:
    """Yield (relative path, dataset, transfer syntax) for ``count`` files of one kind."""
    modality, sop_class = _MODALITY[kind.name]
    made = 0
    for study in _studies(kind, count, patients, seed):
        for series in range(1, kind.series_per_study + 1):
            for instance in range(1, kind.series_size + 1):
                if made == count:
                    return
                rng = random.Random(f"{kind.name}:{seed}:{made}")
                ds = _header(kind.name, study, series, instance, modality, sop_class, rng)
                if kind.name == "ct":
                    syntax = _ct(ds, instance, pixels)
                elif kind.name in ("mr", "mr-j2k"):
                    syntax = _mr(ds, instance, pixels, j2k=kind.name == "mr-j2k")
                elif kind.name == "us":
                    syntax = _us(ds, instance, pixels)
                else:
                    syntax = _us_jpeg(ds, instance)
                patient = study.patient
                folder = f"{_ascii(patient.name)}_{patient.patient_id}"
                relative = (
                    f"{folder}/{study.date}_{study.accession}/"
                    f"{series:03d}_{modality}_{kind.name}/IM{instance:05d}.dcm"
                )
                made += 1
                yield relative, ds, syntax


def _file_meta(ds: Dataset, syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(syntax)
    meta.SourceApplicationEntityTitle = "SYNTH_MODALITY"
    return meta


def build_corpus(
    dest: Path,
    files: int = DEFAULT_FILES,
    *,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> CorpusInfo:
    """Write the corpus of ``files`` files under ``dest`` and describe it.

    The same ``files`` and ``seed`` (with the same pydicom, numpy and openjpeg) give the same
    bytes. ``progress(done, total)`` is called every 100 files.
    """
    dest.mkdir(parents=True, exist_ok=True)
    counts = plan(files)
    patients = _patients(max(4, files // 50), seed)
    pixels = _Pixels(seed)
    total_bytes = 0
    done = 0
    for kind in KINDS:
        for relative, ds, syntax in _kind_files(kind, counts[kind.name], patients, pixels, seed):
            ds.file_meta = _file_meta(ds, syntax)
            path = dest / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            dcmwrite(path, ds, enforce_file_format=True)
            total_bytes += path.stat().st_size
            done += 1
            if progress is not None and done % 100 == 0:
                progress(done, files)
    return CorpusInfo(
        root=str(dest),
        files=done,
        bytes=total_bytes,
        kinds=counts,
        j2k_encoder="pylibjpeg-openjpeg" if _j2k_available() else "pydicom JPEG2000.dcm frame",
        layout={"path": "PATIENT_NAME_ID/DATE_ACCESSION/SERIES_MODALITY_KIND/IMnnnnn.dcm"},
    )


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def cache_key(files: int, seed: int = 0, *, extra: str = "") -> str:
    """A digest of everything that decides the corpus bytes (this file, library versions)."""
    digest = hashlib.sha256()
    digest.update(Path(__file__).read_bytes())
    for part in (
        CORPUS_FORMAT,
        files,
        seed,
        extra,
        pydicom.__version__,
        np.__version__,
        _version("pylibjpeg-openjpeg"),
    ):
        digest.update(f"|{part}".encode())
    return digest.hexdigest()[:16]


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("generator") == "dicomveil-bench" else None


def ensure_corpus(
    work: Path,
    files: int = DEFAULT_FILES,
    *,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> CorpusInfo:
    """Return the cached corpus under ``work``, building it first if it is missing or stale.

    Only folders this module made (``corpus-*`` holding its manifest) are ever removed.
    """
    key = cache_key(files, seed)
    folder = work / f"corpus-{files}-{key}"
    manifest = _read_manifest(folder)
    if manifest is not None and manifest.get("key") == key:
        return CorpusInfo(**manifest["info"])
    work.mkdir(parents=True, exist_ok=True)
    for stale in work.glob(f"corpus-{files}-*"):
        if stale != folder and stale.is_dir() and _read_manifest(stale) is not None:
            shutil.rmtree(stale)
    partial = work / f"corpus-{files}-{key}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    if folder.exists():
        shutil.rmtree(folder)
    if log is not None:
        log(f"building the corpus ({files} files) in {folder}")
    data_dir = partial / "data"

    def report(done: int, total: int) -> None:
        if log is not None and done % 500 == 0:
            log(f"  {done}/{total} files")

    built = build_corpus(data_dir, files, seed=seed, progress=report)
    info = CorpusInfo(**{**asdict(built), "root": str(folder / "data"), "key": key})
    manifest_text = json.dumps({"generator": "dicomveil-bench", "key": key, "info": asdict(info)})
    (partial / MANIFEST).write_text(manifest_text, encoding="utf-8")
    partial.rename(folder)
    return info


# -- the big multi-frame instance ----------------------------------------------------------


def _big_header(frames: int, rows: int, columns: int, seed: int) -> Dataset:
    patient = _patients(1, seed + 1)[0]
    study = _Study(
        patient=patient,
        number=900_000 + seed,
        date="20240229",
        time="235959",
        accession=f"ACC{900_000 + seed:08d}",
        uid=_uid(900_000 + seed),
        physician=_DOCTORS[0],
    )
    rng = random.Random(f"big:{seed}")
    ds = _header("big", study, 1, 1, "OT", MF_GRAYSCALE_WORD_SC, rng)
    ds.ConversionType = "WSD"
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = 0x00182002  # Frame Label Vector
    ds.FrameLabelVector = ["F"]
    _set_gray(ds, rows, columns)
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
    ds.file_meta = _file_meta(ds, ExplicitVRLittleEndian)
    return ds


def write_big_multiframe(
    path: Path, size_bytes: int, *, rows: int = 512, columns: int = 512, seed: int = 0
) -> int:
    """Stream one multi-frame instance of about ``size_bytes`` of pixel data; return its size.

    Only the header and a handful of distinct frames are ever in memory: the Pixel Data
    element's header is written by hand and the frames are appended in chunks of 8 MiB.
    """
    frame_bytes = rows * columns * 2
    frames = max(1, size_bytes // frame_bytes)
    length = frames * frame_bytes
    if length > 0xFFFFFFFE:
        raise ValueError("pixel data above 4 GiB needs an encapsulated or a Float syntax")
    header = io.BytesIO()
    dcmwrite(header, _big_header(frames, rows, columns, seed), enforce_file_format=True)
    pixels = _Pixels(seed)
    distinct = [pixels.gray(rows, z, head=z % 2 == 0).tobytes() for z in range(16)]
    per_chunk = max(1, (8 << 20) // frame_bytes)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.write(header.getvalue())
        out.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, length))
        written = 0
        while written < frames:
            count = min(per_chunk, frames - written)
            out.write(b"".join(distinct[(written + i) % 16] for i in range(count)))
            written += count
    return path.stat().st_size


def ensure_big(
    work: Path, size_mb: int, *, log: Callable[[str], None] | None = None
) -> tuple[Path, int]:
    """Return the cached big instance (``size_mb`` MiB of frames) and its size in bytes."""
    key = cache_key(size_mb, extra="big")
    path = work / f"big-{size_mb}mb-{key}.dcm"
    stamp = path.with_suffix(".json")
    if path.exists() and stamp.exists():
        return path, path.stat().st_size
    work.mkdir(parents=True, exist_ok=True)
    for stale in work.glob(f"big-{size_mb}mb-*.dcm"):
        stale.unlink()
        stale.with_suffix(".json").unlink(missing_ok=True)
    if log is not None:
        log(f"writing the {size_mb} MiB multi-frame instance {path.name}")
    size = write_big_multiframe(path, size_mb << 20)
    stamp.write_text(json.dumps({"generator": "dicomveil-bench", "bytes": size}), "utf-8")
    return path, size


def main(argv: list[str] | None = None) -> int:
    """Build the corpus (or the big instance) from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", nargs="?", type=Path, help="folder for the corpus")
    parser.add_argument("--files", type=int, help=f"file count (default {DEFAULT_FILES})")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the default count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--big", type=Path, help="write the big multi-frame instance here")
    parser.add_argument("--big-mb", type=int, default=2048, help="its pixel data in MiB")
    args = parser.parse_args(argv)
    if args.big is not None:
        size = write_big_multiframe(args.big, args.big_mb << 20, seed=args.seed)
        print(f"wrote {args.big} ({size / 1e6:.0f} MB)")
    if args.dest is not None:
        files = args.files or max(1, round(DEFAULT_FILES * args.scale))
        info = build_corpus(args.dest, files, seed=args.seed)
        print(f"wrote {info.files} files, {info.bytes / 1e6:.0f} MB to {info.root}: {info.kinds}")
    if args.big is None and args.dest is None:
        parser.error("give DEST, --big PATH or both")
    return 0


if __name__ == "__main__":
    sys.exit(main())
