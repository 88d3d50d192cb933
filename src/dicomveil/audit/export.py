"""Export audit entries in forms a hospital security team can ingest.

* :func:`to_syslog`: RFC 5424 syslog messages (facility 13, "log audit"), the entry's
  details as structured data and as the JSON message body.
* :func:`to_atna`: DICOM audit messages (DICOM PS3.15 Annex A.5, the IHE ATNA / RFC 3881
  ``AuditMessage`` XML), one per entry.

Both carry only what the entry carries: pseudonyms, ids, counts and hashes, no PHI.

References
----------
RFC 5424, The Syslog Protocol. DICOM PS3.15 A.5 "Audit Trail Message Format Profile";
event codes from DICOM PS3.16 CID 400-403 (DCM coding scheme).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable, Iterator
from typing import Literal
from xml.etree import ElementTree as ET

from dicomveil.audit import events as ev
from dicomveil.audit.entry import AuditEntry

__all__ = ["export", "to_atna", "to_syslog"]

_SD_ID = "dicomveil@32473"  # 32473: the enterprise number reserved for examples (RFC 5612)
_FACILITY_LOG_AUDIT = 13
_SEVERITY = {"success": 6, "not-found": 5, "denied": 4, "failure": 3}
_ATNA_OUTCOME = {"success": "0", "not-found": "4", "denied": "4", "failure": "8"}

# event -> (EventID code, meaning, EventActionCode, EventTypeCode or None)
_Code = tuple[str, str]
_ATNA_EVENTS: dict[str, tuple[_Code, str, _Code | None]] = {
    ev.DEID_RUN_START: (("110100", "Application Activity"), "E", ("110120", "Application Start")),
    ev.DEID_RUN_END: (("110100", "Application Activity"), "E", ("110121", "Application Stop")),
    ev.DEID_FILE: (("110106", "Export"), "R", None),
    ev.REID_LOOKUP: (("110110", "Patient Record"), "R", None),
    ev.REID_DATASET: (("110110", "Patient Record"), "U", None),
    ev.VAULT_KEY: (("110113", "Security Alert"), "E", ("110129", "Security Configuration")),
    ev.ACCESS_DENIED: (("110113", "Security Alert"), "E", ("110132", "Use of Restricted Function")),
    ev.AUDIT_REPAIR: (("110113", "Security Alert"), "E", ("110134", "Audit Recording Started")),
    ev.ARCHIVE_QUERY: (("110112", "Query"), "E", None),
    ev.ARCHIVE_READ: (("110103", "DICOM Instances Accessed"), "R", None),
    ev.REID_REQUEST: (("110110", "Patient Record"), "R", None),
}
_DEFAULT_EVENT: tuple[_Code, str, _Code | None] = (("110100", "Application Activity"), "E", None)


def _sd_escape(value: object) -> str:
    text = str(value)
    for char in ("\\", '"', "]"):
        text = text.replace(char, "\\" + char)
    return text


def _ascii_token(value: str, limit: int) -> str:
    token = "".join(c if 33 <= ord(c) <= 126 else "_" for c in value)[:limit]
    return token or "-"


def to_syslog(entry: AuditEntry, *, hostname: str | None = None) -> str:
    """Return ``entry`` as one RFC 5424 syslog message (without framing or newline).

    ``<PRI>1 TIMESTAMP HOSTNAME dicomveil - MSGID [dicomveil@32473 ...] BOM{details}``
    """
    severity = _SEVERITY.get(entry.outcome, 5)
    params = {
        "seq": entry.seq,
        "actor": entry.actor,
        "outcome": entry.outcome,
        "keyId": entry.key_id,
        "hash": entry.hash,
    }
    data = " ".join(f'{name}="{_sd_escape(value)}"' for name, value in params.items())
    host = _ascii_token(hostname or socket.gethostname(), 255)
    body = json.dumps(dict(entry.details), sort_keys=True, ensure_ascii=False)
    return (
        f"<{_FACILITY_LOG_AUDIT * 8 + severity}>1 {entry.time} {host} dicomveil - "
        f"{_ascii_token(entry.event, 32)} [{_SD_ID} {data}] \ufeff{body}"
    )


def _coded(parent: ET.Element, tag: str, code: _Code, scheme: str = "DCM") -> ET.Element:
    return ET.SubElement(
        parent, tag, {"csd-code": code[0], "codeSystemName": scheme, "originalText": code[1]}
    )


def _participants(message: ET.Element, entry: AuditEntry) -> None:
    details = entry.details
    patient = details.get("pseudo_patient_id")
    if patient:
        obj = ET.SubElement(
            message,
            "ParticipantObjectIdentification",
            {
                "ParticipantObjectID": str(patient),
                "ParticipantObjectTypeCode": "1",
                "ParticipantObjectTypeCodeRole": "1",
            },
        )
        _coded(obj, "ParticipantObjectIDTypeCode", ("2", "Patient Number"), "RFC-3881")
    study = details.get("pseudo_study_uid") or (
        details.get("pseudonym") if details.get("query") == "study" else None
    )
    studies = [study] if study else list(details.get("pseudo_study_uids") or ())
    for uid in studies:
        obj = ET.SubElement(
            message,
            "ParticipantObjectIdentification",
            {
                "ParticipantObjectID": str(uid),
                "ParticipantObjectTypeCode": "2",
                "ParticipantObjectTypeCodeRole": "3",
            },
        )
        _coded(obj, "ParticipantObjectIDTypeCode", ("110180", "Study Instance UID"))


def to_atna(entry: AuditEntry, *, source_id: str | None = None) -> str:
    """Return ``entry`` as a DICOM audit message (PS3.15 A.5 XML, one line)."""
    event_id, action, event_type = _ATNA_EVENTS.get(entry.event, _DEFAULT_EVENT)
    message = ET.Element("AuditMessage")
    identification = ET.SubElement(
        message,
        "EventIdentification",
        {
            "EventActionCode": action,
            "EventDateTime": entry.time,
            "EventOutcomeIndicator": _ATNA_OUTCOME.get(entry.outcome, "4"),
        },
    )
    _coded(identification, "EventID", event_id)
    if event_type is not None:
        _coded(identification, "EventTypeCode", event_type)
    purpose = entry.details.get("purpose")
    if purpose:
        _coded(identification, "PurposeOfUse", ("PURPOSE", str(purpose)), "dicomveil")
    ET.SubElement(message, "ActiveParticipant", {"UserID": entry.actor, "UserIsRequestor": "true"})
    application = ET.SubElement(
        message, "ActiveParticipant", {"UserID": "dicomveil", "UserIsRequestor": "false"}
    )
    _coded(application, "RoleIDCode", ("110150", "Application"))
    source = ET.SubElement(
        message, "AuditSourceIdentification", {"AuditSourceID": source_id or socket.gethostname()}
    )
    _coded(source, "AuditSourceTypeCode", ("4", "Application Server"))
    _participants(message, entry)
    return ET.tostring(message, encoding="unicode")


def export(
    entries: Iterable[AuditEntry], fmt: Literal["syslog", "atna"], *, hostname: str | None = None
) -> Iterator[str]:
    """Yield one exported message per entry in format ``fmt``."""
    for entry in entries:
        if fmt == "syslog":
            yield to_syslog(entry, hostname=hostname)
        else:
            yield to_atna(entry, source_id=hostname)
