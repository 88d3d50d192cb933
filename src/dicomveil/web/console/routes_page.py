"""The console's routes page: the routing queue (forwards of complete studies) and the retry
of a dead-lettered forward. Operators' page (``admin``): what it shows is pseudonymous
(study UIDs as de-identified, destination labels without credentials, value-free reasons),
as ``dicomveil routes status`` prints it."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dicomveil.audit.entry import AuditEvent
from dicomveil.forward.queue import STATES
from dicomveil.forward.report import describe
from dicomveil.web.console.pages import Csrf, Session, console_auth_of, need, render
from dicomveil.web.deps import ServicesDep

__all__ = ["router"]

router = APIRouter(prefix="/console", include_in_schema=False)

SHOWN = 200
"""Forwards listed (most urgent first, newest first within a priority)."""


def _forwarding(request: Request) -> Any:
    """The routing attached to this server process (``None``: no ``[[routing.rules]]``)."""
    return getattr(request.app.state, "forwarding", None)


@router.get("/routes", response_class=HTMLResponse)
async def routes(request: Request, visitor: Session) -> HTMLResponse:
    """Counts by state, then the forwards: state, priority, rule, destination, progress."""
    need(visitor, "admin")
    forwarding = _forwarding(request)
    counts: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    if forwarding is not None:
        counts = await run_in_threadpool(forwarding.queue.counts)
        jobs = await run_in_threadpool(forwarding.queue.jobs, STATES, SHOWN)
        rows = [describe(job) for job in jobs]
    context = {"configured": forwarding is not None, "counts": counts, "rows": rows}
    return render(request, "routes.html", visitor, context)


@router.post("/routes/{job_id}/retry")
async def retry(
    request: Request, job_id: int, visitor: Session, services: ServicesDep, csrf: Csrf = ""
) -> Response:
    """Put a dead-lettered forward back in the queue (fresh attempts, due now; audited)."""
    need(visitor, "admin")
    console_auth_of(request).check_csrf(visitor, csrf)
    forwarding = _forwarding(request)
    requeued = forwarding is not None and await run_in_threadpool(
        forwarding.queue.retry, job_id, time.time()
    )
    if not requeued:
        message = "no dead-lettered forward with that id"
        return render(request, "error.html", visitor, {"message": message}, 404)
    forwarding.worker.wake()
    services.audit.append(
        AuditEvent(
            "forward.retry",
            visitor.token.actor,
            "success",
            {"job": job_id, "session": visitor.session.id},
        )
    )
    return RedirectResponse("/console/routes", status_code=303)
