"""Value objects the vault returns: what a lookup finds, counts and reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from dicomveil.engine.identity import OriginalIdentity

__all__ = [
    "OriginalStudy",
    "RecordResult",
    "RotationReport",
    "StudyMatch",
    "VaultStats",
]


@dataclass(frozen=True, slots=True)
class OriginalStudy:
    """Original patient and study identifiers of one study (PHI: never log or audit).

    Field names follow the DICOM keywords (see :meth:`as_dicom`).
    """

    patient_id: str
    patient_name: str
    issuer_of_patient_id: str
    patient_birth_date: str
    study_instance_uid: str
    accession_number: str
    study_date: str

    def __repr__(self) -> str:  # never print PHI by accident
        return "OriginalStudy(<sealed>)"

    @classmethod
    def from_identity(cls, identity: OriginalIdentity) -> OriginalStudy:
        """Take the patient and study part of one instance's original identity."""
        return cls(
            patient_id=identity.patient_id,
            patient_name=identity.patient_name,
            issuer_of_patient_id=identity.issuer_of_patient_id,
            patient_birth_date=identity.patient_birth_date,
            study_instance_uid=identity.study_instance_uid,
            accession_number=identity.accession_number,
            study_date=identity.study_date,
        )

    @classmethod
    def from_dicom(cls, values: Mapping[str, str]) -> OriginalStudy:
        """Build from values keyed by DICOM keyword (the inverse of :meth:`as_dicom`)."""
        return cls(
            patient_id=values["PatientID"],
            patient_name=values["PatientName"],
            issuer_of_patient_id=values["IssuerOfPatientID"],
            patient_birth_date=values["PatientBirthDate"],
            study_instance_uid=values["StudyInstanceUID"],
            accession_number=values["AccessionNumber"],
            study_date=values["StudyDate"],
        )

    def as_dicom(self) -> dict[str, str]:
        """Return the values keyed by DICOM keyword (``PatientID``, ``StudyDate``, ...)."""
        return {
            "PatientID": self.patient_id,
            "PatientName": self.patient_name,
            "IssuerOfPatientID": self.issuer_of_patient_id,
            "PatientBirthDate": self.patient_birth_date,
            "StudyInstanceUID": self.study_instance_uid,
            "AccessionNumber": self.accession_number,
            "StudyDate": self.study_date,
        }


@dataclass(frozen=True, slots=True)
class StudyMatch:
    """One study found in the vault: its pseudonyms (safe) and its originals (sealed).

    Attributes
    ----------
    pseudo_patient_id, pseudo_study_id, pseudo_study_uid, pseudo_accession:
        The pseudonymous identifiers, as written into the de-identified data.
    pseudonym_key_id:
        Id of the pseudonym key that produced them.
    run_id:
        The de-identification run that first recorded the study.
    date_offset_days:
        Days the study's dates were shifted by (``0`` when not shifted).
    series_count, instance_count:
        How many series and instances of the study the vault knows.
    original:
        The original identifiers.
    """

    pseudo_patient_id: str
    pseudo_study_id: str
    pseudo_study_uid: str
    pseudo_accession: str
    pseudonym_key_id: str
    run_id: str
    recorded_at: datetime
    date_offset_days: int
    series_count: int
    instance_count: int
    original: OriginalStudy = field(repr=False)

    def pseudonymous_dicom(self) -> dict[str, str]:
        """Return the pseudonymous identifiers keyed by DICOM keyword."""
        return {
            "PatientID": self.pseudo_patient_id,
            "StudyID": self.pseudo_study_id,
            "StudyInstanceUID": self.pseudo_study_uid,
            "AccessionNumber": self.pseudo_accession,
        }


@dataclass(frozen=True, slots=True)
class RecordResult:
    """How many rows one :meth:`~dicomveil.vault.Vault.record` call added (the rest existed)."""

    instances: int = 0
    series: int = 0
    studies: int = 0
    received: int = 0


@dataclass(frozen=True, slots=True)
class VaultStats:
    """Counts and key ids of a vault (no PHI)."""

    url: str
    revision: str | None
    patients: int
    studies: int
    series: int
    instances: int
    runs: int
    vault_keys: dict[str, str]
    rows_by_vault_key: dict[str, int]
    studies_by_pseudonym_key: dict[str, int]

    @property
    def rotating(self) -> bool:
        """Whether a vault key rotation is in progress (a key is ``pending``)."""
        return "pending" in self.vault_keys.values()


@dataclass(frozen=True, slots=True)
class RotationReport:
    """Outcome of :func:`~dicomveil.vault.rotate_vault_key`."""

    old_key_id: str
    new_key_id: str
    resealed: int
    resumed: bool
