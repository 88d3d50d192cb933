"""Health, readiness (no token) and Prometheus metrics (``admin`` token)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from dicomveil.readiness import Check, engine_check, run_checks
from dicomveil.tokens import Token
from dicomveil.web.deps import ServicesDep, require
from dicomveil.web.metrics import CONTENT_TYPE
from dicomveil.web.services import Services

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    """Return ``{"status": "ok"}`` while the process runs."""
    return {"status": "ok"}


def _audit_usable(services: Services) -> None:
    if not services.audit.ready():
        raise OSError("the audit log cannot be written")


def _checks(services: Services) -> list[Check]:
    """The gateway's own checks, then those :attr:`Services.readiness` adds (the broker's)."""
    checks = [
        Check("index", services.index.ping),
        Check("storage", lambda: services.store.head("readyz-probe")),
        Check("audit", lambda: _audit_usable(services)),
    ]
    vault = services.vault
    if vault is not None:
        checks.insert(1, engine_check("vault", vault.engine))
    return checks + list(services.readiness)


@router.get(
    "/readyz",
    summary="Readiness: databases, broker, storage and audit log usable",
    responses={503: {"description": "A backing service is not usable"}},
)
def readyz(services: ServicesDep) -> JSONResponse:
    """Check the index and vault databases, the broker (cluster mode), the archive store and
    the audit folder, at once, each within :data:`~dicomveil.readiness.DEFAULT_TIMEOUT`.

    The answer names each check and whether it passed (no URLs, no messages); 503 when one
    failed. ``/healthz`` stays a liveness check: it never touches a backing service.
    """
    checks = run_checks(_checks(services))
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
