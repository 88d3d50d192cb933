"""Health, readiness (no token) and Prometheus metrics (``admin`` token)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from dicomveil.errors import DicomveilError
from dicomveil.tokens import Token
from dicomveil.web.deps import ServicesDep, require
from dicomveil.web.metrics import CONTENT_TYPE

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    """Return ``{"status": "ok"}`` while the process runs."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: index, storage and audit log usable",
    responses={503: {"description": "A backing service is not usable"}},
)
def readyz(services: ServicesDep) -> JSONResponse:
    """Check the index database, the archive store and the audit folder.

    The answer names each check and whether it passed (no URLs, no messages).
    """
    checks: dict[str, bool] = {}
    try:
        services.index.ping()
        checks["index"] = True
    except DicomveilError:
        checks["index"] = False
    try:
        services.store.head("readyz-probe")
        checks["storage"] = True
    except DicomveilError:
        checks["storage"] = False
    checks["audit"] = services.audit.ready()
    ready = all(checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}}},
)
def metrics(services: ServicesDep, _: Annotated[Token, Depends(require("admin"))]) -> Response:
    """The gateway's metrics in the Prometheus text format (no PHI in any label)."""
    return Response(services.metrics.render(), media_type=CONTENT_TYPE)
