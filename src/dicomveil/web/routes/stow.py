"""STOW-RS ``POST /dicomweb/studies[/{study}]``: every instance de-identified on the way in.

Instances are stored only de-identified (through the same pipeline as ``deid``), recorded in
the vault and the audit log, and indexed. The answer is a Store Instances Response Module
dataset: the pseudonymous instances stored (ReferencedSOPSequence) and the ones refused
(FailedSOPSequence, with a FailureReason per instance); 200 when all were stored, 202 when
some were, 409 when none was.

Posted to a study's URL, only instances of that study are stored. The study is named by its
pseudonymous Study Instance UID (the only one the archive knows), so the check is made on
each instance after de-identification; the others are refused with FailureReason A900H.
PS3.18 leaves the code to the implementation; A9xx (the data set does not match what the
request says) is the family of Table I.2-2 that fits, and A7xx would tell the client the
server is out of resources.

Every part gets its own answer, whatever the others did and whichever engine process
finishes first (see :mod:`dicomveil.web.request_plan`): a part repeating an earlier part's
SOP Instance UID with the same bytes is answered as stored (once in the archive); with other
bytes, or whose SOP Instance UID the archive holds with other content, it is refused with
FailureReason 0111H (Duplicate SOP Instance, PS3.7 Annex C) and a ``Warning`` header;
unless the ``replace_instances`` setting is on, when the archived instance is replaced. An
identical re-STOW is a success that stores nothing again. Conflicts and replacements are
audited.

References
----------
PS3.18 §10.5 (Store Transaction), Table 10.5.3-1 and Table I.2-2 (failure reasons).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from dicomveil.pipeline.failures import Failure, FailureKind, failure_of
from dicomveil.pipeline.statuses import CANNOT_UNDERSTAND, STATUSES, status_of
from dicomveil.tokens import Token
from dicomveil.web.deps import DICOMWEB_PREFIX, ServicesDep, dicomweb_root, require
from dicomveil.web.dicomjson import element
from dicomveil.web.ingest import CONFLICT_KIND, Ingested, deidentify_uploads
from dicomveil.web.services import Services
from dicomveil.web.uploads import Workspace, receive_instances
from dicomveil.web.warning_header import warning_header

__all__ = ["FAILURE_REASONS", "router"]

router = APIRouter(prefix=DICOMWEB_PREFIX, tags=["STOW-RS"])

DICOM_JSON: Final = "application/dicom+json"

FAILURE_REASONS: Final = STATUSES
"""Failure kind → FailureReason: the one table of :mod:`dicomveil.pipeline.statuses`."""

CONFLICT_WARNING: Final = (
    "an instance was refused: its SOP Instance UID is archived (or repeated in the request) "
    "with other content"
)

_STOW_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {
            'multipart/related; type="application/dicom"': {
                "schema": {"type": "string", "format": "binary"}
            }
        },
    }
}


def _reason(result: Ingested) -> int:
    return status_of(failure_of(result.outcome) or Failure(FailureKind.INTERNAL, ""))


def _item(sop_class: str, sop_instance: str) -> dict[str, Any]:
    item = {"00081150": element("UI", sop_class)}
    if sop_instance:
        item["00081155"] = element("UI", sop_instance)
    return item


def _response(results: list[Ingested], unsupported: int, root: str) -> JSONResponse:
    stored: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    studies = set()
    for result in results:
        if result.record is not None:
            values = result.record.values
            url = (
                f"{root}/studies/{values['StudyInstanceUID']}/series/"
                f"{values['SeriesInstanceUID']}/instances/{values['SOPInstanceUID']}"
            )
            studies.add(str(values["StudyInstanceUID"]))
            item = _item(result.sop_class_uid, result.sop_instance_uid)
            item["00081190"] = element("UR", url)
            stored.append(item)
        elif result.outcome.status == "ok":  # cluster mode: accepted, queued (no URL yet)
            stored.append(_item(result.sop_class_uid, result.sop_instance_uid))
        else:
            item = _item(result.sop_class_uid, result.sop_instance_uid)
            item["00081197"] = element("US", _reason(result))
            failed.append(item)
    failed += [{"00081197": element("US", CANNOT_UNDERSTAND)}] * unsupported
    body: dict[str, Any] = {}
    if len(studies) == 1:
        body["00081190"] = element("UR", f"{root}/studies/{studies.pop()}")
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": stored}
    status = 200 if not failed else 202 if stored else 409
    conflicts = any(r.outcome.error_kind == CONFLICT_KIND for r in results)
    headers = warning_header([CONFLICT_WARNING] if conflicts else [])
    return JSONResponse(body, status_code=status, media_type=DICOM_JSON, headers=headers)


_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {"content": {DICOM_JSON: {}}, "description": "All instances stored"},
    202: {"content": {DICOM_JSON: {}}, "description": "Some instances stored"},
    400: {"description": "Malformed or truncated multipart body"},
    409: {"content": {DICOM_JSON: {}}, "description": "No instance stored"},
    413: {"description": "Too large"},
    415: {"description": "Not multipart/related with application/dicom parts"},
}


async def _store(
    request: Request, services: Services, token: Token, study: str | None
) -> JSONResponse:
    workspace = Workspace(services)
    try:
        parts = await receive_instances(request, workspace, services, single=False)
        dicom = [p.path for p in parts if p.content_type in ("", "application/dicom")]
        results = await run_in_threadpool(
            deidentify_uploads,
            services,
            dicom,
            workspace.path,
            actor=token.actor,
            organisation=token.org or None,
            entry="stow",
            archive=True,
            study=study,
        )
    finally:
        workspace.remove()
    return _response(results, len(parts) - len(dicom), dicomweb_root(request))


@router.post(
    "/studies",
    summary="STOW-RS: store instances (de-identified on the way in)",
    openapi_extra=_STOW_BODY,
    response_class=JSONResponse,
    responses=_RESPONSES,
)
async def store_instances(
    request: Request,
    services: ServicesDep,
    token: Annotated[Token, Depends(require("ingest"))],
) -> JSONResponse:
    """Store the instances of a ``multipart/related; type="application/dicom"`` body.

    Each part is one instance; parts of another media type are reported as failed.
    """
    return await _store(request, services, token, None)


@router.post(
    "/studies/{study}",
    summary="STOW-RS: store instances of one study (de-identified on the way in)",
    openapi_extra=_STOW_BODY,
    response_class=JSONResponse,
    responses=_RESPONSES,
)
async def store_study_instances(
    request: Request,
    services: ServicesDep,
    token: Annotated[Token, Depends(require("ingest"))],
    study: str,
) -> JSONResponse:
    """Store the instances of the body that belong to ``study`` (a pseudonymous Study
    Instance UID); the others are reported as failed (FailureReason A900H)."""
    return await _store(request, services, token, study)
