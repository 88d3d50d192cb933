"""``POST /api/v1/deidentify``: de-identify one posted instance and send it back."""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from dicomveil import errors
from dicomveil.pipeline.failures import FailureKind, failure_of
from dicomveil.tokens import Token
from dicomveil.web.deps import ServicesDep, require
from dicomveil.web.ingest import Ingested, deidentify_uploads
from dicomveil.web.uploads import Workspace, receive_instances

__all__ = ["STUDY_ID_HEADER", "STUDY_UID_HEADER", "raise_for", "router"]

router = APIRouter(prefix="/api/v1", tags=["gateway"])

STUDY_ID_HEADER: Final = "X-Dicomveil-Study-ID"
"""Response header: the pseudonymous study id (what ``reidentify --study`` takes)."""
STUDY_UID_HEADER: Final = "X-Dicomveil-Study-UID"
"""Response header: the pseudonymous Study Instance UID."""

DICOM_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/dicom": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}
"""OpenAPI description of a body holding one DICOM instance."""


_ERRORS: Final[dict[FailureKind, type[errors.DicomveilError]]] = {
    FailureKind.MALFORMED: errors.MalformedInputError,
    FailureKind.UNREADABLE: errors.MalformedInputError,
    FailureKind.TOO_DEEP: errors.MalformedInputError,
    FailureKind.UNSUPPORTED: errors.UnsupportedInputError,
    FailureKind.NOT_AN_INSTANCE: errors.UnsupportedInputError,
    FailureKind.DEIDENTIFICATION: errors.DeidentificationError,
    FailureKind.UNSAFE_PATH: errors.UnsafePathError,
    FailureKind.STUDY_MISMATCH: errors.DeidentificationError,
    FailureKind.STORAGE_UNAVAILABLE: errors.StorageUnavailable,
}
"""The error (hence the HTTP status) a failure kind answers with; others: StorageError."""


def raise_for(result: Ingested) -> None:
    """Raise the error a failed upload stands for (its PHI-free reason as the message)."""
    failure = failure_of(result.outcome)
    if failure is None:
        return
    raise _ERRORS.get(failure.kind, errors.StorageError)(failure.reason)


@router.post(
    "/deidentify",
    summary="De-identify one DICOM instance",
    response_class=FileResponse,
    openapi_extra=DICOM_BODY,
    responses={
        200: {
            "content": {"application/dicom": {}},
            "description": "The de-identified instance; the pseudonymous study id is in the "
            f"{STUDY_ID_HEADER} header.",
        },
        400: {"description": "Not DICOM, or unreadable"},
        413: {"description": "Too large"},
        415: {"description": "Neither application/dicom nor multipart/form-data"},
        422: {"description": "The instance cannot be made safe"},
    },
)
async def deidentify(
    request: Request,
    services: ServicesDep,
    token: Annotated[Token, Depends(require("ingest"))],
) -> FileResponse:
    """De-identify the posted instance with the server's policy and key.

    The body is ``application/dicom`` (the instance) or ``multipart/form-data`` with a
    ``file`` field. The way back is recorded in the vault and the call in the audit log; the
    instance is not archived. Its pseudonyms are those of the calling token (the server's
    keys salted with the token's id): stable for that token, never the archive's, so the
    answer cannot turn a chosen hospital number into the archive's pseudonym.
    """
    workspace = Workspace(services)
    try:
        uploads = await receive_instances(request, workspace, services, single=True)
        (result,) = await run_in_threadpool(
            deidentify_uploads,
            services,
            [part.path for part in uploads],
            workspace.path,
            actor=token.actor,
            organisation=token.org or None,
            entry="api",
            archive=False,
            salt=f"token:{token.id}",
        )
        if not result.ok or result.staged is None or result.outcome.identity is None:
            raise_for(result)
        assert result.staged is not None and result.outcome.identity is not None
    except BaseException:
        workspace.remove()
        raise
    pseudo = result.outcome.identity.pseudonymous
    return FileResponse(
        result.staged,
        media_type="application/dicom",
        headers={STUDY_ID_HEADER: pseudo.study_id, STUDY_UID_HEADER: pseudo.study_instance_uid},
        background=BackgroundTask(workspace.remove),
    )
