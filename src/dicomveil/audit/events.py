"""The events dicomveil audits, as builders that accept only PHI-free values.

Every builder takes pseudonyms, opaque ids, key ids, counts, hashes and keywords; nothing
here accepts an original identifier. Event names are stable strings (they become the
syslog MSGID and select the ATNA event code on export).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from dicomveil.audit.entry import AuditEvent, Outcome

__all__ = [
    "ACCESS_DENIED",
    "ARCHIVE_QUERY",
    "ARCHIVE_READ",
    "REID_REQUEST",
    "KeyOperation",
    "QueryKind",
    "AUDIT_REPAIR",
    "DEID_FILE",
    "DEID_RUN_END",
    "DEID_RUN_START",
    "REID_DATASET",
    "REID_LOOKUP",
    "VAULT_KEY",
    "access_denied",
    "archive_access",
    "reid_request",
    "request_refused",
    "file_outcome",
    "reidentification",
    "run_finished",
    "run_started",
    "vault_key_operation",
]

DEID_RUN_START = "deid.run.start"
DEID_RUN_END = "deid.run.end"
DEID_FILE = "deid.file"
REID_LOOKUP = "reid.lookup"
REID_DATASET = "reid.dataset"
VAULT_KEY = "vault.key"
ACCESS_DENIED = "access.denied"
AUDIT_REPAIR = "audit.repair"
ARCHIVE_QUERY = "archive.query"
ARCHIVE_READ = "archive.read"
REID_REQUEST = "reid.request"

QueryKind = Literal["patient", "study", "accession", "dataset"]
KeyOperation = Literal["create", "rotate.start", "rotate.end", "rotate.failed"]


def _clean(details: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in details.items() if value is not None}


def run_started(
    *,
    actor: str,
    run_id: str,
    policy: str,
    options: Sequence[str],
    pseudonym_key_id: str,
    vault_key_id: str | None = None,
    files: int | None = None,
    organisation: str | None = None,
) -> AuditEvent:
    """A de-identification run (batch) starts: policy name, option names, key ids, and the
    organisation (tenant) it runs for, when it has one."""
    details = {
        "run_id": run_id,
        "organisation": organisation,
        "policy": policy,
        "options": sorted(options),
        "pseudonym_key_id": pseudonym_key_id,
        "vault_key_id": vault_key_id,
        "files": files,
    }
    return AuditEvent(DEID_RUN_START, actor, "success", _clean(details))


def run_finished(
    *, actor: str, run_id: str, counts: Mapping[str, int], outcome: Outcome = "success"
) -> AuditEvent:
    """A de-identification run ends: counts by outcome (``written``, ``failed``, ...)."""
    return AuditEvent(DEID_RUN_END, actor, outcome, {"run_id": run_id, "counts": dict(counts)})


def file_outcome(
    *,
    actor: str,
    run_id: str,
    outcome: Outcome,
    output_sha256: str | None = None,
    input_sha256: str | None = None,
    pseudo_patient_id: str | None = None,
    pseudo_study_uid: str | None = None,
    pseudo_sop_instance_uid: str | None = None,
    error: str | None = None,
) -> AuditEvent:
    """One file's outcome: pseudonymous ids and file hashes only.

    ``error`` is an error *class* or keyword-level reason (``"UnsupportedInputError"``),
    never a message that could quote a value.
    """
    details = {
        "run_id": run_id,
        "input_sha256": input_sha256,
        "output_sha256": output_sha256,
        "pseudo_patient_id": pseudo_patient_id,
        "pseudo_study_uid": pseudo_study_uid,
        "pseudo_sop_instance_uid": pseudo_sop_instance_uid,
        "error": error,
    }
    return AuditEvent(DEID_FILE, actor, outcome, _clean(details))


def reidentification(
    *,
    actor: str,
    purpose: str,
    kind: QueryKind,
    outcome: Outcome,
    matches: int,
    pseudonym: str | None = None,
    fingerprint: str | None = None,
    pseudo_patient_id: str | None = None,
    pseudo_study_uid: str | None = None,
    mapped_uids: int | None = None,
) -> AuditEvent:
    """A re-identification: who, purpose, which pseudonym and how many matches, never the result.

    A query value that matched nothing is recorded only as its keyed ``fingerprint`` (it
    might be an original identifier typed by mistake).
    """
    details = {
        "purpose": purpose,
        "query": kind,
        "pseudonym": pseudonym,
        "query_fingerprint": fingerprint,
        "matches": matches,
        "pseudo_patient_id": pseudo_patient_id,
        "pseudo_study_uid": pseudo_study_uid,
        "mapped_uids": mapped_uids,
    }
    name = REID_DATASET if kind == "dataset" else REID_LOOKUP
    return AuditEvent(name, actor, outcome, _clean(details))


def access_denied(
    *,
    actor: str,
    action: str,
    reason: str,
    purpose: str | None = None,
    fingerprint: str | None = None,
) -> AuditEvent:
    """A refused operation (no actor, no purpose, no or wrong key); ``reason`` is PHI-free."""
    details = {
        "action": action,
        "reason": reason,
        "purpose": purpose,
        "query_fingerprint": fingerprint,
    }
    return AuditEvent(ACCESS_DENIED, actor or "<unknown>", "denied", _clean(details))


def vault_key_operation(
    *,
    actor: str,
    operation: KeyOperation,
    key_id: str,
    new_key_id: str | None = None,
    rows: int | None = None,
    outcome: Outcome = "success",
) -> AuditEvent:
    """A vault key was created or rotated (key ids and row counts only)."""
    details = {"operation": operation, "key_id": key_id, "new_key_id": new_key_id, "rows": rows}
    return AuditEvent(VAULT_KEY, actor, outcome, _clean(details))


def request_refused(
    *,
    actor: str,
    role: str | None,
    needed: str,
    client: str,
    status: int,
    action: str,
    reason: str,
) -> AuditEvent:
    """A request refused before it reached its route (401: no or unknown token; 403: role).

    ``action`` is the method and the route *template* (never the path or the query: they
    may hold anything a client typed); ``role`` is the token's (``None``: no valid token).
    """
    details = {
        "action": action,
        "reason": reason,
        "status": status,
        "needed": needed,
        "role": role,
        "client": client,
    }
    return AuditEvent(ACCESS_DENIED, actor or "<unknown>", "denied", _clean(details))


def archive_access(
    *,
    actor: str,
    role: str,
    client: str,
    action: str,
    status: int,
    query: bool,
    studies: Sequence[str],
    matches: int | None = None,
) -> AuditEvent:
    """A read of the de-identified archive, one per request, at study level.

    ``query`` (QIDO-RS) or a retrieval (WADO-RS); ``studies`` are the pseudonymous Study
    Instance UIDs the request named or (a query) answered with; ``matches`` the number of
    results of a query.
    """
    details = {
        "action": action,
        "status": status,
        "role": role,
        "client": client,
        "pseudo_study_uids": sorted(set(studies)),
        "matches": matches,
    }
    name = ARCHIVE_QUERY if query else ARCHIVE_READ
    return AuditEvent(name, actor, _outcome(status), _clean(details))


def reid_request(
    *, actor: str, role: str | None, client: str, action: str, status: int
) -> AuditEvent:
    """A request to a re-identification route, whatever became of it (refused ones too).

    What was looked up is in the route's own entry (``reid.lookup``, ``reid.dataset``,
    ``access.denied``); this one ties the attempt to the token, its role and the client.
    """
    details = {"action": action, "status": status, "role": role, "client": client}
    return AuditEvent(REID_REQUEST, actor or "<unknown>", _outcome(status), _clean(details))


def _outcome(status: int) -> Outcome:
    if status < 400:
        return "success"
    if status in (401, 403):
        return "denied"
    return "not-found" if status == 404 else "failure"
