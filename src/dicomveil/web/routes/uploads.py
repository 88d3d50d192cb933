"""Direct uploads over HTTP (``ingest`` tokens only; see ``docs/uploads.md``).

- ``POST /api/v1/uploads`` ``{"count": N, "priority": "ROUTINE"}`` → 201
  ``{"upload_id", "expires_in", "urls": [{"name", "url", "headers"}]}``;
- the client ``PUT``\\ s each object to its URL with the headers given;
- ``POST /api/v1/uploads/{upload_id}/complete`` → 202 ``{"upload_id", "status_url"}``
  (idempotent);
- ``GET /api/v1/uploads/{upload_id}`` → the progress, one value-free outcome per object.

An incoming store that cannot sign URLs (``file://``, ``memory://``) answers 409 (the
server's configuration, not the request, is in the way; not a 5xx: nothing failed).
"""

from __future__ import annotations

import re
import threading
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from dicomveil.errors import ConfigError
from dicomveil.tokens import Token
from dicomveil.uploads import UploadService, open_upload_service
from dicomveil.uploads.presign import PresignUnsupported
from dicomveil.uploads.registry import UploadRow
from dicomveil.uploads.service import UnknownUpload, UploadConflict
from dicomveil.web.deps import require
from dicomveil.web.errors import BadRequest, HttpError, NotFound

__all__ = ["router", "upload_service"]

router = APIRouter(prefix="/api/v1", tags=["uploads"])

Ingest = Annotated[Token, Depends(require("ingest"))]
_ID: Final = re.compile(r"[0-9a-f]{32}")
_OPEN_LOCK = threading.Lock()


class Conflict(HttpError):
    """The upload, or the server's incoming store, does not allow this (409)."""

    status = 409


class NewUploadRequest(BaseModel):
    """How many objects the client will upload, and their reading priority."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1, description="Number of objects (one instance each).")
    priority: str = Field("ROUTINE", description="STAT, URGENT or ROUTINE.")


def upload_service(request: Request) -> UploadService:
    """The app's upload service, opened on first use (``app.state.uploads``)."""
    state = request.app.state
    with _OPEN_LOCK:
        service: UploadService | None = getattr(state, "uploads", None)
        if service is None:
            events = getattr(state, "events", None)
            hook = events.on_quarantined if events is not None else None
            service = open_upload_service(state.services.runtime, hook)
            state.uploads = service
    return service


def _checked_id(upload_id: str) -> str:
    if _ID.fullmatch(upload_id) is None:
        raise NotFound("no such upload")
    return upload_id


def _progress(row: UploadRow) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for item in row.objects:
        counts[item.state] = counts.get(item.state, 0) + 1
    return {
        "upload_id": row.id,
        "state": row.state,
        "priority": row.priority,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "completed_at": row.completed_at,
        "counts": counts,
        "objects": [
            {
                "name": o.name,
                "state": o.state,
                "size": o.size,
                "status": None if o.status is None else f"{o.status:04X}",
                "failure": o.failure,
            }
            for o in row.objects
        ],
    }


@router.post("/uploads", status_code=201, summary="Start a direct upload (pre-signed URLs)")
async def create_upload(body: NewUploadRequest, token: Ingest, request: Request) -> JSONResponse:
    """Sign one ``PUT`` URL per object in the incoming store (object names are ours)."""
    try:
        service = await run_in_threadpool(upload_service, request)
        created = await run_in_threadpool(
            service.create, token.actor, body.count, body.priority, token.org or None
        )
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    except PresignUnsupported as exc:
        raise Conflict(f"direct uploads need a bucket incoming store: {exc}") from None
    except ConfigError as exc:
        raise Conflict(str(exc)) from None
    urls = [{"name": n, "url": s.url, "headers": s.headers} for n, s in created.urls]
    answer = {"upload_id": created.upload_id, "expires_in": created.expires_in, "urls": urls}
    return JSONResponse(answer, status_code=201, headers={"Cache-Control": "no-store"})


@router.post(
    "/uploads/{upload_id}/complete", status_code=202, summary="Ingest the uploaded objects"
)
async def complete_upload(upload_id: str, token: Ingest, request: Request) -> JSONResponse:
    """Check the objects and hand them on (once; a repeated call answers 202 again)."""
    upload_id = _checked_id(upload_id)
    service = await run_in_threadpool(upload_service, request)
    try:
        await run_in_threadpool(service.complete, upload_id, token.actor)
    except UnknownUpload:
        raise NotFound("no such upload") from None
    except UploadConflict as exc:
        raise Conflict(str(exc)) from None
    status_url = str(request.url_for("upload_status", upload_id=upload_id).path)
    return JSONResponse(
        {"upload_id": upload_id, "status_url": status_url},
        status_code=202,
        headers={"Location": status_url},
    )


@router.get("/uploads/{upload_id}", name="upload_status", summary="An upload's progress")
async def upload_status(upload_id: str, token: Ingest, request: Request) -> dict[str, Any]:
    """Per-object outcomes: state, size, PS3.4 status, failure kind (no value)."""
    upload_id = _checked_id(upload_id)
    service = await run_in_threadpool(upload_service, request)
    try:
        row = await run_in_threadpool(service.status, upload_id, token.actor)
    except UnknownUpload:
        raise NotFound("no such upload") from None
    return _progress(row)
