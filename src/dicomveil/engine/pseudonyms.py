"""Keyed pseudonyms for patients, studies and accession numbers.

Formats (all upper-case base32 from HMAC-SHA256, so they fit the VRs and never reveal the
original without the key):

- patient: ``[ORG-]P`` + 15 characters (PatientID is LO, 64 chars; PatientName uses the same);
- study id: ``S`` + 15 characters (StudyID is SH, 16 chars), from the Study Instance UID;
- accession: ``A`` + 15 characters (AccessionNumber is SH, 16 chars);
- hash override: ``H`` + 15 characters.
"""

from __future__ import annotations

from dataclasses import replace

from dicomveil.engine.identity import IdentityRecord
from dicomveil.engine.keys import PseudonymKeys

__all__ = [
    "accession_pseudonym",
    "complete_identity",
    "hashed_value",
    "patient_key",
    "patient_pseudonym",
    "study_pseudonym",
]


def patient_key(patient_id: str, issuer: str, patient_name: str, study_uid: str) -> str:
    """Return the string that identifies a patient for pseudonyms and date shifts.

    The patient ID with its issuer when there is one; otherwise the name; otherwise the study.
    """
    if patient_id.strip():
        return f"id:{issuer.strip()}\0{patient_id.strip()}"
    if patient_name.strip():
        return f"name:{patient_name.strip().upper()}"
    return f"study:{study_uid.strip()}"


def patient_pseudonym(keys: PseudonymKeys, key: str, organization: str = "") -> str:
    """Return the pseudonymous patient id for a :func:`patient_key`.

    Examples
    --------
    >>> keys = PseudonymKeys(b"example-secret-0123456789")
    >>> p = patient_pseudonym(keys, patient_key("123", "", "", ""), "HOSP1")
    >>> p.startswith("HOSP1-P") and len(p) == 22
    True
    """
    token = "P" + keys.token("patient", key, 15)
    return f"{organization}-{token}" if organization else token


def study_pseudonym(keys: PseudonymKeys, study_uid: str) -> str:
    """Return the pseudonymous study id (StudyID) derived from the Study Instance UID."""
    return "S" + keys.token("study", study_uid.strip(), 15)


def accession_pseudonym(keys: PseudonymKeys, accession: str, issuer: str = "") -> str:
    """Return the pseudonymous accession number."""
    return "A" + keys.token("accession", f"{issuer.strip()}\0{accession.strip()}", 15)


def hashed_value(keys: PseudonymKeys, tag: int, value: str) -> str:
    """Return a keyed pseudonym of any value (the policy's ``hash`` action)."""
    return "H" + keys.token(f"hash:{tag:08x}", value, 15)


def complete_identity(
    record: IdentityRecord, keys: PseudonymKeys, organization: str = ""
) -> IdentityRecord:
    """Return ``record`` with a missing pseudonymous PatientID or StudyID filled in.

    An instance without PatientID (or StudyID) keeps none in its output, but its output path
    and its vault record need one. They get the keyed pseudonym the engine gives that element
    when it is present: the patient's from :func:`patient_key` (the ID, else the name, else
    the Study Instance UID), the study's from the Study Instance UID. Files of one patient
    and one study therefore share their folders whether or not they carry the element.
    Nothing is changed when both are present (or the Study Instance UID is missing too: the
    record is then refused elsewhere).
    """
    p, o = record.pseudonymous, record.original
    if p.patient_id and p.study_id:
        return record
    patient_id, study_id = p.patient_id, p.study_id
    if not patient_id:
        key = patient_key(
            o.patient_id, o.issuer_of_patient_id, o.patient_name, o.study_instance_uid
        )
        patient_id = patient_pseudonym(keys, key, organization)
    if not study_id and o.study_instance_uid:
        study_id = study_pseudonym(keys, o.study_instance_uid)
    return replace(record, pseudonymous=replace(p, patient_id=patient_id, study_id=study_id))
