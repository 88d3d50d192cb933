"""Export to RFC 5424 syslog and to DICOM PS3.15 A.5 (IHE ATNA) audit messages."""

from __future__ import annotations

import json
import re
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from dicomveil.audit import AuditEntry, AuditEvent, AuditLog, export, to_atna, to_syslog
from dicomveil.audit.events import access_denied, reidentification, run_started

SECRET = b"audit-secret-for-tests-0123456789"
# RFC 5424: <PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG]
SYSLOG = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,6}Z) (?P<host>[!-~]{1,255}) "
    r"dicomveil - (?P<msgid>[!-~]{1,32}) \[dicomveil@32473"
    r"(?P<params>( [^ =\]\"]+=\"(?:[^\"\\\]]|\\.)*\")+)\]"
    r" \ufeff(?P<msg>.*)$"
)


def _attr(element: ET.Element, path: str, name: str) -> str | None:
    found = element.find(path) if path else element
    assert found is not None, path
    return found.get(name)


@pytest.fixture
def entries(tmp_path: Path) -> list[AuditEntry]:
    log = AuditLog(tmp_path, SECRET)
    log.append_many(
        [
            run_started(actor="svc", run_id="r1", policy="basic", options=[], pseudonym_key_id="k"),
            reidentification(
                actor='ali"ce]',
                purpose="tumour board",
                kind="study",
                outcome="success",
                matches=1,
                pseudonym="2.25.1",
                pseudo_patient_id="ANON1",
                pseudo_study_uid="2.25.1",
            ),
            reidentification(
                actor="bob", purpose="qa", kind="patient", outcome="not-found", matches=0
            ),
            access_denied(actor="eve", action="reid.lookup", reason="no purpose given"),
            AuditEvent("custom.event", "svc"),
        ]
    )
    return list(log.entries())


def test_syslog_lines_follow_rfc5424(entries: list[AuditEntry]) -> None:
    lines = list(export(entries, "syslog", hostname="pacs-gw"))
    matches = [m for m in map(SYSLOG.match, lines) if m is not None]
    assert len(matches) == len(lines) == 5, lines
    assert [int(m["pri"]) for m in matches] == [110, 110, 109, 108, 110]  # facility 13
    assert [m["msgid"] for m in matches][:2] == ["deid.run.start", "reid.lookup"]
    assert 'actor="ali\\"ce\\]"' in matches[1]["params"]
    assert f'hash="{entries[1].hash}"' in matches[1]["params"]
    assert json.loads(matches[1]["msg"])["purpose"] == "tumour board"
    assert to_syslog(entries[0]).split(" ")[2]  # default hostname


def test_atna_messages_follow_ps315_a5(entries: list[AuditEntry]) -> None:
    messages = [ET.fromstring(m) for m in export(entries, "atna", hostname="pacs-gw")]
    assert all(m.tag == "AuditMessage" for m in messages)
    event_ids = [_attr(m, "EventIdentification/EventID", "csd-code") for m in messages]
    assert event_ids == ["110100", "110110", "110110", "110113", "110100"]
    outcomes = [_attr(m, "EventIdentification", "EventOutcomeIndicator") for m in messages]
    assert outcomes == ["0", "0", "4", "4", "0"]
    reid = messages[1]
    assert _attr(reid, "EventIdentification", "EventActionCode") == "R"
    assert _attr(reid, "EventIdentification/PurposeOfUse", "originalText") == "tumour board"
    requestor = (
        _attr(reid, "ActiveParticipant", "UserID"),
        _attr(reid, "ActiveParticipant", "UserIsRequestor"),
    )
    assert requestor == ('ali"ce]', "true")
    assert _attr(reid, "AuditSourceIdentification", "AuditSourceID") == "pacs-gw"
    objects = {
        _attr(o, "ParticipantObjectIDTypeCode", "csd-code"): o.get("ParticipantObjectID")
        for o in reid.findall("ParticipantObjectIdentification")
    }
    assert objects == {"2": "ANON1", "110180": "2.25.1"}
    assert _attr(messages[3], "EventIdentification/EventTypeCode", "csd-code") == "110132"
    assert to_atna(entries[0]).startswith("<AuditMessage>")
