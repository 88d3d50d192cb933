"""Synthetic studies full of fake PHI, for demos, tests and benchmarks.

Every file is made in code: CT images with a patient's name, IDs, dates, addresses and
physicians in the places real files keep them (top level, nested sequences, private blocks,
free text). No real person is described; names are drawn from a fixed list with a seed, so the
same call writes the same bytes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

__all__ = ["DemoPatient", "demo_patients", "write_demo_study"]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_ROOT = "1.2.826.0.1.3680043.10.1234"  # an example root for synthetic data
_FAMILY = ["MUSTERMANN", "DUPONT", "ROSSI", "KOWALSKA", "NAKAMURA", "OKAFOR", "SILVA", "NOVAK"]
_GIVEN = ["ERIKA", "JEAN", "GIULIA", "ANNA", "HARUTO", "CHIDI", "MARIA", "PETR"]
_STREETS = ["Linden Way", "Harbour Road", "Mill Lane", "Station Street"]


@dataclass(frozen=True)
class DemoPatient:
    """A fake patient."""

    name: str
    patient_id: str
    birth_date: str
    address: str
    phone: str


def demo_patients(count: int, seed: int = 0) -> list[DemoPatient]:
    """Return ``count`` fake patients, the same for the same seed."""
    rng = random.Random(seed)
    patients = []
    for index in range(count):
        family, given = rng.choice(_FAMILY), rng.choice(_GIVEN)
        born = date(1940, 1, 1) + timedelta(days=rng.randrange(0, 60 * 365))
        patients.append(
            DemoPatient(
                name=f"{family}{index}^{given}",
                patient_id=f"MRN{seed:02d}{index:06d}",
                birth_date=born.strftime("%Y%m%d"),
                address=f"{rng.randrange(1, 200)} {rng.choice(_STREETS)}, Springfield",
                phone=f"+1 555 {rng.randrange(1000000, 9999999)}",
            )
        )
    return patients


def _uid(*parts: int) -> str:
    return ".".join([_ROOT, *(str(p) for p in parts)])


def _ct_image(
    patient: DemoPatient,
    study: int,
    series: int,
    instance: int,
    rows: int,
    columns: int,
    study_date: str,
) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = _uid(study, series, instance)
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study_date
    ds.StudyTime = ds.SeriesTime = "101500"
    ds.AccessionNumber = f"ACC{study:07d}"
    ds.Modality = "CT"
    ds.Manufacturer = "SYNTHETIC"
    ds.InstitutionName = "Springfield General Hospital"
    ds.InstitutionAddress = "1 Hospital Drive, Springfield"
    ds.ReferringPhysicianName = "HOUSE^GREGORY"
    ds.StationName = "CTSCAN01"
    ds.StudyDescription = f"CT CHEST for {patient.name.replace('^', ' ')}"
    ds.SeriesDescription = f"AXIAL {series}"
    ds.OperatorsName = "TECH^TERRY"
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.IssuerOfPatientID = "SPRINGFIELD"
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = "O"
    ds.PatientAge = "050Y"
    ds.PatientAddress = patient.address
    ds.PatientTelephoneNumbers = patient.phone
    ds.OtherPatientIDs = patient.patient_id + "-OLD"
    ds.PatientComments = f"Call {patient.phone} before the scan"
    ds.DeviceSerialNumber = "SN-448812"
    ds.SoftwareVersions = "1.0"
    ds.ProtocolName = "CHEST ROUTINE"
    ds.StudyInstanceUID = _uid(study)
    ds.SeriesInstanceUID = _uid(study, series)
    ds.StudyID = f"{study}"
    ds.SeriesNumber = series
    ds.InstanceNumber = instance
    ds.FrameOfReferenceUID = _uid(study, 0)
    ds.ImagePositionPatient = [0, 0, float(instance)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceThickness = "1.0"
    ds.PixelSpacing = [0.7, 0.7]
    ds.BurnedInAnnotation = "NO"
    request = Dataset()
    request.RequestedProcedureID = f"RP{study}"
    request.ScheduledProcedureStepID = f"SPS{study}"
    request.RequestingPhysician = "WILSON^JAMES"
    ds.RequestAttributesSequence = Sequence([request])
    if instance > 1:
        source = Dataset()
        source.ReferencedSOPClassUID = CT_IMAGE_STORAGE
        source.ReferencedSOPInstanceUID = _uid(study, series, instance - 1)
        ds.SourceImageSequence = Sequence([source])
    block = ds.private_block(0x0011, "SYNTHETIC PRIVATE", create=True)
    block.add_new(0x01, "LO", patient.name.replace("^", " "))
    block.add_new(0x02, "LO", patient.patient_id)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
    ds.WindowCenter, ds.WindowWidth = "40", "400"
    value = (instance * 37 + series * 11) % 4096
    row = bytes((value + x) % 256 for x in range(columns * 2))
    ds.PixelData = row * rows
    return ds


def write_demo_study(
    folder: Path,
    *,
    patients: int = 2,
    studies_per_patient: int = 1,
    series_per_study: int = 2,
    images_per_series: int = 5,
    rows: int = 64,
    columns: int = 64,
    seed: int = 0,
) -> list[Path]:
    """Write synthetic CT studies under ``folder`` and return the file paths.

    Files are named by patient name and ID, as many hospital exports do (so that a tool
    that copies names into its output is caught).
    """
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    rng = random.Random(seed)
    study_counter = seed * 100_000
    for patient in demo_patients(patients, seed):
        for _ in range(studies_per_patient):
            study_counter += 1
            study_date = (date(2020, 1, 1) + timedelta(days=rng.randrange(0, 1500))).strftime(
                "%Y%m%d"
            )
            for series in range(1, series_per_study + 1):
                for instance in range(1, images_per_series + 1):
                    ds = _ct_image(
                        patient, study_counter, series, instance, rows, columns, study_date
                    )
                    meta = FileMetaDataset()
                    meta.MediaStorageSOPClassUID = ds.SOPClassUID
                    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                    meta.TransferSyntaxUID = ExplicitVRLittleEndian
                    meta.SourceApplicationEntityTitle = "CTSCAN01"
                    ds.file_meta = meta
                    name = patient.name.replace("^", "_")
                    path = folder / f"{name}_{patient.patient_id}" / f"S{study_counter}"
                    path = path / f"{series:03d}_{instance:05d}.dcm"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    dcmwrite(path, ds, enforce_file_format=True)
                    written.append(path)
    return written
