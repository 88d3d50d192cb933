"""The identity of one instance before and after de-identification.

This is what the re-identification vault stores (sealed) for the way back. It is computed by
the engine from the original and the de-identified dataset; it is the only place where
original values leave the engine, and it must only ever be handed to the vault.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "KEYWORDS",
    "REQUIRED_PSEUDONYMS",
    "IdentityRecord",
    "OriginalIdentity",
    "PseudonymousIdentity",
]

#: The DICOM keyword (top level) each field of the identities below is read from.
KEYWORDS: Final[Mapping[str, str]] = {
    "patient_id": "PatientID",
    "patient_name": "PatientName",
    "issuer_of_patient_id": "IssuerOfPatientID",
    "patient_birth_date": "PatientBirthDate",
    "study_instance_uid": "StudyInstanceUID",
    "study_id": "StudyID",
    "accession_number": "AccessionNumber",
    "study_date": "StudyDate",
    "series_instance_uid": "SeriesInstanceUID",
    "sop_instance_uid": "SOPInstanceUID",
    "frame_of_reference_uid": "FrameOfReferenceUID",
}


#: The pseudonymous identifiers the vault needs for the way back (and the output path).
REQUIRED_PSEUDONYMS: Final = (
    "patient_id",
    "study_instance_uid",
    "series_instance_uid",
    "sop_instance_uid",
)


@dataclass(frozen=True, slots=True)
class OriginalIdentity:
    """Original identifiers of one instance (PHI: seal before storing, never log)."""

    patient_id: str
    patient_name: str
    issuer_of_patient_id: str
    patient_birth_date: str
    study_instance_uid: str
    accession_number: str
    study_date: str
    series_instance_uid: str
    sop_instance_uid: str
    frame_of_reference_uid: str = ""

    def __repr__(self) -> str:  # never print PHI by accident
        return "OriginalIdentity(<sealed>)"


@dataclass(frozen=True, slots=True)
class PseudonymousIdentity:
    """The same instance's identifiers after de-identification (safe to show)."""

    patient_id: str
    study_id: str
    study_instance_uid: str
    accession_number: str
    series_instance_uid: str
    sop_instance_uid: str
    frame_of_reference_uid: str = ""


@dataclass(frozen=True, slots=True)
class IdentityRecord:
    """Original ↔ pseudonymous identity of one instance, with the key that produced it.

    Attributes
    ----------
    key_id:
        Public id of the pseudonym key (:func:`dicomveil.keystore.key_id`).
    date_offset_days:
        Days subtracted from every date when dates were shifted, else ``0``.
    """

    original: OriginalIdentity
    pseudonymous: PseudonymousIdentity
    key_id: str
    date_offset_days: int = 0

    def missing(self) -> str | None:
        """Return the first :data:`REQUIRED_PSEUDONYMS` field that is empty (or the key id,
        ``"key_id"``), or ``None`` when the record can be kept in the vault."""
        for name in REQUIRED_PSEUDONYMS:
            if not getattr(self.pseudonymous, name):
                return name
        return None if self.key_id else "key_id"
