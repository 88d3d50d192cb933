"""Re-identification services: the way back, for the CLI, the gateway and any later entry point.

Both services require the caller's identity and a stated purpose, need the vault key, and
audit every call (who, purpose, which pseudonym, how many matches; never the result). A
refusal is audited as ``access.denied`` and raised as :class:`~dicomveil.errors.AccessDenied`.
A query value that matches nothing is audited only as a keyed fingerprint, in case someone
typed an original identifier.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicomveil.actor import default_actor
from dicomveil.audit import events
from dicomveil.audit.entry import Outcome
from dicomveil.audit.log import AuditLog
from dicomveil.errors import AccessDenied, ConfigError, VaultError
from dicomveil.vault import StudyMatch, Vault

__all__ = ["VaultSource", "default_actor", "reidentify", "reidentify_dataset"]

VaultSource = Vault | Callable[[], Vault]
"""An open vault, or a function opening one (so a missing or wrong key is audited)."""

_MAX_PURPOSE = 500


def _deny(
    audit: AuditLog, *, actor: str, action: str, reason: str, purpose: str, query: str | None
) -> AccessDenied:
    fingerprint = audit.fingerprint(query) if query else None
    audit.append(
        events.access_denied(
            actor=actor,
            action=action,
            reason=reason,
            purpose=purpose or None,
            fingerprint=fingerprint,
        )
    )
    return AccessDenied(f"re-identification refused: {reason}")


@contextmanager
def _authorized(
    source: VaultSource,
    audit: AuditLog,
    *,
    actor: str,
    purpose: str,
    action: str,
    query: str | None,
) -> Iterator[Vault]:
    """Check actor and purpose, open the vault; audit and raise :class:`AccessDenied` if not."""
    actor, purpose = actor.strip(), purpose.strip()
    reason = None
    if not actor:
        reason = "no actor given"
    elif not purpose:
        reason = "no purpose given"
    elif len(purpose) > _MAX_PURPOSE:
        reason = f"purpose longer than {_MAX_PURPOSE} characters"
    if reason is not None:
        raise _deny(
            audit,
            actor=actor,
            action=action,
            reason=reason,
            purpose=purpose[:_MAX_PURPOSE],
            query=query,
        )
    if isinstance(source, Vault):
        yield source
        return
    try:
        vault = source()
    except (ConfigError, VaultError) as exc:
        reason = f"the vault cannot be opened ({type(exc).__name__}: {exc})"
        raise _deny(
            audit, actor=actor, action=action, reason=reason, purpose=purpose, query=query
        ) from None
    with vault:
        yield vault


def reidentify(
    vault: VaultSource,
    audit: AuditLog,
    *,
    actor: str,
    purpose: str,
    patient: str | None = None,
    study: str | None = None,
    accession: str | None = None,
) -> list[StudyMatch]:
    """Return the original identifiers behind one pseudonymous identifier.

    Parameters
    ----------
    vault:
        The vault, or a function opening it.
    audit:
        The audit log; the call is recorded before anything is returned.
    actor:
        Who asks (user name).
    purpose:
        Why (free text, recorded in the audit log).
    patient, study, accession:
        Exactly one pseudonymous identifier: patient id, study id or Study Instance UID,
        or accession number.

    Returns
    -------
    list of StudyMatch
        Every matching study (empty when nothing matches: audited as ``not-found``).

    Raises
    ------
    AccessDenied
        No actor or purpose, or the vault cannot be opened with the key at hand.
    AuditError
        The audit log cannot be written (then nothing is returned).
    """
    given = [v for v in (patient, study, accession) if v is not None]
    if len(given) != 1 or not given[0]:
        raise ValueError("give exactly one of patient, study or accession (non-empty)")
    value = given[0]
    kind: events.QueryKind = (
        "patient" if patient is not None else "study" if study is not None else "accession"
    )
    with _authorized(
        vault, audit, actor=actor, purpose=purpose, action=events.REID_LOOKUP, query=value
    ) as opened:
        matches = opened.find(patient=patient, study=study, accession=accession)
    outcome: Outcome = "success" if matches else "not-found"
    patients = {match.pseudo_patient_id for match in matches}
    audit.append(
        events.reidentification(
            actor=actor.strip(),
            purpose=purpose.strip(),
            kind=kind,
            outcome=outcome,
            matches=len(matches),
            pseudonym=value if matches else None,
            fingerprint=None if matches else audit.fingerprint(value),
            pseudo_patient_id=patients.pop() if len(patients) == 1 else None,
            pseudo_study_uid=matches[0].pseudo_study_uid if len(matches) == 1 else None,
        )
    )
    return matches


def _elements(dataset: Dataset) -> Iterator[DataElement]:
    """Yield every non-sequence element of ``dataset`` at any sequence depth."""
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value:
                yield from _elements(item)
        else:
            yield element


def _all_elements(dataset: Dataset) -> Iterator[DataElement]:
    meta = getattr(dataset, "file_meta", None)
    if meta is not None:
        yield from _elements(meta)
    yield from _elements(dataset)


def _replace(element: DataElement, mapping: Mapping[str, str]) -> int:
    """Replace the element's value(s) found in ``mapping``; return how many were replaced."""
    value = element.value
    if isinstance(value, MultiValue | list):
        new = [mapping.get(str(v), v) for v in value]
        count = sum(str(a) != str(b) for a, b in zip(value, new, strict=True))
        if count:
            element.value = new
        return count
    if value is not None and str(value) in mapping:
        element.value = mapping[str(value)]
        return 1
    return 0


def _find_study(vault: Vault, dataset: Dataset) -> StudyMatch | None:
    """The de-identified study ``dataset`` belongs to or references (its own first)."""
    candidates = [str(dataset.get("StudyInstanceUID", "") or "")]
    candidates += [str(e.value) for e in _elements(dataset) if e.keyword == "StudyInstanceUID"]
    for uid in dict.fromkeys(c for c in candidates if c):
        matches = vault.find(study=uid)
        if matches:
            return matches[0]
    patient = str(dataset.get("PatientID", "") or "")
    matches = vault.find(patient=patient) if patient else []
    return matches[0] if matches else None


def reidentify_dataset(
    dataset: Dataset, vault: VaultSource, audit: AuditLog, *, actor: str, purpose: str
) -> Dataset:
    """Return a re-identified copy of an object made on a de-identified study.

    For a returned SR, Encapsulated PDF, SEG or KOS: the patient (ID, name, issuer, birth
    date) is set back to the original; if the object belongs to the de-identified study,
    its Study Instance UID, Accession Number and Study Date too; every UI value at any
    sequence depth (and in the file meta) that the vault knows as a pseudonymous study,
    series, instance or frame of reference UID is mapped back (so a returned segmentation
    overlays the original images), as are nested Patient ID and Accession Number
    values equal to the study's pseudonyms. UIDs the vault does not know (new objects made
    by the reader) stay as they are. Patient Identity Removed, if present, becomes ``NO``.

    Raises
    ------
    AccessDenied
        As for :func:`reidentify`.
    VaultError
        The object references no study the vault knows (audited as ``not-found``).
    """
    own_uid = str(dataset.get("StudyInstanceUID", "") or "")
    with _authorized(
        vault, audit, actor=actor, purpose=purpose, action=events.REID_DATASET, query=own_uid
    ) as opened:
        match = _find_study(opened, dataset)
        out = copy.deepcopy(dataset)
        uids = {str(v) for e in _all_elements(out) if e.VR == "UI" for v in _values(e)}
        mapping = opened.map_uids_back(uids) if match is not None else {}
    if match is None:
        _audit_dataset(audit, actor, purpose, None, 0, audit.fingerprint(own_uid))
        raise VaultError("the object references no de-identified study known to the vault")
    original = match.original.as_dicom()
    mapped = sum(_replace(e, mapping) for e in _all_elements(out) if e.VR == "UI")
    nested = {
        match.pseudo_patient_id: original["PatientID"],
        match.pseudo_accession: original["AccessionNumber"],
    }
    for element in _elements(out):
        if element.keyword in ("PatientID", "AccessionNumber") and element.value:
            _replace(element, nested)
    for keyword in ("PatientID", "PatientName", "IssuerOfPatientID", "PatientBirthDate"):
        setattr(out, keyword, original[keyword])
    if own_uid == match.pseudo_study_uid:
        for keyword in ("AccessionNumber", "StudyDate"):
            setattr(out, keyword, original[keyword])
    if "PatientIdentityRemoved" in out:
        out.PatientIdentityRemoved = "NO"
    _audit_dataset(audit, actor, purpose, match, mapped, None)
    return out


def _audit_dataset(
    audit: AuditLog,
    actor: str,
    purpose: str,
    match: StudyMatch | None,
    mapped: int,
    fingerprint: str | None,
) -> None:
    found = match is not None
    audit.append(
        events.reidentification(
            actor=actor.strip(),
            purpose=purpose.strip(),
            kind="dataset",
            outcome="success" if found else "not-found",
            matches=int(found),
            pseudonym=match.pseudo_study_uid if match else None,
            fingerprint=fingerprint,
            pseudo_patient_id=match.pseudo_patient_id if match else None,
            pseudo_study_uid=match.pseudo_study_uid if match else None,
            mapped_uids=mapped if match else None,
        )
    )


def _values(element: DataElement) -> list[object]:
    value = element.value
    if isinstance(value, MultiValue | list):
        return list(value)
    return [] if value is None or value == "" else [value]
