"""The console's pages: server-rendered HTML (Jinja2), no script at all.

Every page needs a live session (else the login page) and checks the session's role:
studies need ``read``, batches ``ingest``, quarantine ``admin`` (delete) or ``ingest``
(release: it submits the originals again), audit and tokens ``admin``,
re-identification ``reidentify``; the dashboard and the policy are open to every session.
A session of a token bound to an organisation (tenant) sees and acts on its organisation's
studies, batches and quarantined runs only; another organisation's are answered as absent.
Forms that change something carry the session's CSRF token. Every answer is ``no-store``
and carries a CSP that allows no script.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from dicomveil.audit.entry import AuditEvent
from dicomveil.audit.events import archive_access
from dicomveil.errors import AccessDenied, ConfigError, QueryError
from dicomveil.index import Level, matchable_at, parse_condition
from dicomveil.index import Query as IndexQuery
from dicomveil.pipeline.quarantine import run_organisation
from dicomveil.profile.resolved import resolved_rows
from dicomveil.reid import reidentify
from dicomveil.tokens import ROLES, Role, Token
from dicomveil.web.console import data
from dicomveil.web.console.auth import (
    CONSOLE_LOGIN,
    ConsoleAuth,
    LoginRequired,
    PageForbidden,
    Visitor,
    console_auth,
)
from dicomveil.web.console.charts import bar_chart
from dicomveil.web.deps import ServicesDep, reader_scope
from dicomveil.web.services import Services

__all__ = ["SECURITY_HEADERS", "router", "templates"]

router = APIRouter(prefix="/console", include_in_schema=False)

templates = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self' data:; style-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

STUDY_FIELDS: Final = (
    ("PatientID", "Patient ID"),
    ("PatientName", "Patient name"),
    ("StudyDate", "Study date"),
    ("AccessionNumber", "Accession"),
    ("ModalitiesInStudy", "Modalities"),
    ("StudyDescription", "Description"),
)
_PAGE: Final = 50
_AUDIT_ROWS: Final = 200
_NAV: Final[tuple[tuple[str, str, Role | tuple[Role, ...] | None], ...]] = (
    ("/console/", "Dashboard", None),
    ("/console/studies", "Studies", "read"),
    ("/console/batches", "Batches", "ingest"),
    ("/console/quarantine", "Quarantine", ("admin", "ingest")),
    ("/console/audit", "Audit", "admin"),
    ("/console/tokens", "Tokens", "admin"),
    ("/console/routes", "Routes", "admin"),
    ("/console/policy", "Policy", None),
    ("/console/reidentify", "Re-identify", "reidentify"),
)


def console_auth_of(request: Request) -> ConsoleAuth:
    auth = console_auth(request)
    assert auth is not None, "the console router is mounted only with its auth"
    return auth


def current_visitor(request: Request) -> Visitor:
    """The request's session (a FastAPI dependency); no session: the login page."""
    visitor = console_auth_of(request).visitor(request)
    if visitor is None:
        raise LoginRequired()
    return visitor


Session = Annotated[Visitor, Depends(current_visitor)]
Csrf = Annotated[str, Form(max_length=128)]


def need(visitor: Visitor, role: Role | tuple[Role, ...]) -> None:
    if not _allowed(visitor, role):
        wanted = " or ".join(role) if isinstance(role, tuple) else role
        raise PageForbidden(
            f"this page needs the {wanted} role (this session: {visitor.token.role})"
        )


def _allowed(visitor: Visitor, role: Role | tuple[Role, ...] | None) -> bool:
    """Whether the session has ``role`` (one of them, for a tuple; ``None``: any session)."""
    if role is None:
        return True
    return any(visitor.allows(one) for one in (role if isinstance(role, tuple) else (role,)))


def render(
    request: Request,
    name: str,
    visitor: Visitor | None,
    context: dict[str, Any] | None = None,
    status: int = 200,
) -> HTMLResponse:
    """Render a template with the navigation the session may use, and the headers."""
    nav = [
        (href, label, href == request.url.path)
        for href, label, role in _NAV
        if visitor is not None and _allowed(visitor, role)
    ]
    page = templates.get_template(name).render(
        visitor=visitor,
        csrf=visitor.session.csrf if visitor else "",
        nav=nav,
        **(context or {}),
    )
    return HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)


def _same_origin(request: Request) -> bool:
    """A form post comes from this server's own pages (browsers say so; others send none)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if not origin or origin == "null":  # "null": a page with Referrer-Policy no-referrer
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


# -- login, logout -------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def console_root() -> Response:
    """``/console`` → ``/console/``."""
    return RedirectResponse("/console/", status_code=308)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    """The login form: paste a token."""
    return render(request, "login.html", None)


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, token: Annotated[str, Form(max_length=256)] = "") -> Response:
    """Check the token, open a session, set the cookie, go to the dashboard."""
    if not _same_origin(request):
        return render(request, "login.html", None, {"error": "cross-site login refused"}, 403)
    response: Response = RedirectResponse("/console/", status_code=303)
    if console_auth_of(request).login(response, token) is None:
        failed = render(request, "login.html", None, {"error": "that token is not valid"}, 401)
        return failed
    response.headers.update(SECURITY_HEADERS)
    return response


@router.post("/logout")
def logout(request: Request, visitor: Session, csrf: Csrf = "") -> Response:
    """End the session (audited) and go back to the login page."""
    auth = console_auth_of(request)
    auth.check_csrf(visitor, csrf)
    response = RedirectResponse(CONSOLE_LOGIN, status_code=303)
    auth.logout(request, response)
    return response


# -- dashboard ----------------------------------------------------------------------------


def _mib(value: float) -> float:
    return value / (1 << 20)


@router.get("/", response_class=HTMLResponse)
async def dashboard(request: Request, visitor: Session, services: ServicesDep) -> HTMLResponse:
    """Archive counts, ingest outcomes, request outcomes, storage, recent batches.

    A session of a token bound to an organisation (tenant) sees its organisation's archive
    counts and batches only: the server-wide figures (quarantine, archive volume, this
    process's instances and requests) count every organisation's, so they are left out.
    """
    scope = reader_scope(visitor.token)
    counts = await run_in_threadpool(services.index.counts, scope)
    allowed = visitor.allows("ingest")
    runs = await run_in_threadpool(data.batches, services, visitor.token) if allowed else []
    recent = runs[:8]
    context: dict[str, Any] = {
        "counts": counts,
        "organisation": scope,
        "batches": recent,
        "batch_chart": bar_chart(
            "Recent batches: MiB written",
            [(b["batch_id"][-8:], _mib(b["bytes"])) for b in recent],
            " MiB",
        ),
    }
    if scope is None:
        context |= _server_figures(request, services)
    return render(request, "dashboard.html", visitor, context)


def _server_figures(request: Request, services: Services) -> dict[str, Any]:
    """The dashboard's server-wide figures (every organisation's)."""
    ingest = data.ingest_counts(services)
    return {
        "ingest": ingest,
        "minutes": (time.monotonic() - console_auth_of(request).started) / 60,
        "volume": data.archive_volume(services),
        "quarantined": sum(r.inputs for r in data.quarantine_runs(services)),
        "ingest_chart": bar_chart("Instances received, by outcome", sorted(ingest.items())),
        "requests_chart": bar_chart(
            "Requests answered, by status", list(data.request_counts(services).items())
        ),
    }


# -- studies --------------------------------------------------------------------------------


def _study_query(
    services: Services, values: dict[str, str], offset: int, organisation: str | None
) -> IndexQuery:
    allowed = matchable_at(Level.STUDY)
    conditions = {}
    for keyword, raw in values.items():
        condition = parse_condition(
            allowed[keyword],
            raw,
            case_insensitive_names=services.settings.case_insensitive_names,
        )
        if condition is not None:
            conditions[keyword] = condition
    return IndexQuery(
        Level.STUDY, conditions=conditions, limit=_PAGE, offset=offset, organisation=organisation
    )


@router.get("/studies", response_class=HTMLResponse)
async def studies(
    request: Request, visitor: Session, services: ServicesDep, offset: int = 0
) -> HTMLResponse:
    """Search the archive like QIDO-RS; thumbnails; open a study in the viewer."""
    need(visitor, "read")
    values = {
        keyword: request.query_params.get(keyword, "").strip()[:128]
        for keyword, _label in STUDY_FIELDS
    }
    wanted = {k: v for k, v in values.items() if v}
    offset = max(0, min(offset, 2**31 - 1))
    error, rows, more = "", [], False
    try:
        result = await run_in_threadpool(
            services.index.search,
            _study_query(services, wanted, offset, reader_scope(visitor.token)),
        )
        rows, more = [row.values for row in result.rows], result.more
    except QueryError as exc:
        error = str(exc)
    else:
        await run_in_threadpool(services.audit.append, _studies_read(request, visitor, rows))
    context = {
        "fields": STUDY_FIELDS,
        "values": values,
        "rows": rows,
        "error": error,
        "offset": offset,
        "page": _PAGE,
        "more": more,
        "query": urlencode(wanted),
        "viewer": getattr(request.app.state, "viewer_installed", False),
    }
    return render(request, "studies.html", visitor, context)


def _studies_read(request: Request, visitor: Visitor, rows: list[dict[str, Any]]) -> AuditEvent:
    """The ``archive.read`` entry of a studies page: the pseudonymous studies it showed."""
    client = request.client.host if request.client else "-"
    return archive_access(
        actor=visitor.token.actor,
        role=visitor.token.role_text,
        client=client,
        action="GET /console/studies",
        status=200,
        query=False,
        studies=[str(row.get("StudyInstanceUID", "")) for row in rows],
        matches=len(rows),
    )


# -- batches ----------------------------------------------------------------------------------


@router.get("/batches", response_class=HTMLResponse)
async def batches(request: Request, visitor: Session, services: ServicesDep) -> HTMLResponse:
    """Every batch: state, progress, counts."""
    need(visitor, "ingest")
    found = await run_in_threadpool(data.batches, services, visitor.token)
    return render(request, "batches.html", visitor, {"batches": found})


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
async def batch(
    request: Request, batch_id: str, visitor: Session, services: ServicesDep
) -> HTMLResponse:
    """One batch: state, counts, failures (reasons) and its manifest when complete."""
    need(visitor, "ingest")
    listed = await run_in_threadpool(data.batches, services, visitor.token)
    found = next((b for b in listed if b["batch_id"] == batch_id), None)  # another org's: none
    if found is None:
        return render(request, "error.html", visitor, {"message": "no such batch"}, 404)
    manifest = ""
    if found["state"] == "complete" and found.get("manifest"):
        manifest = await run_in_threadpool(_manifest, services, batch_id, visitor.token)
    return render(request, "batch.html", visitor, {"batch": found, "manifest": manifest})


def _manifest(services: Services, batch_id: str, token: Token) -> str:
    """The batch's manifest as the signed-in token may read it (role checked by the page;
    ``""`` when it is another organisation's batch)."""
    from dicomveil.web.errors import HttpError
    from dicomveil.web.routes.batches import manifest

    try:
        answer = manifest(batch_id, services, token)
    except HttpError:
        return ""
    return bytes(answer.body).decode("utf-8", errors="replace")


# -- quarantine -----------------------------------------------------------------------------


@router.get("/quarantine", response_class=HTMLResponse)
async def quarantine(request: Request, visitor: Session, services: ServicesDep) -> HTMLResponse:
    """Each run's quarantined inputs: counts and reasons (never names or paths)."""
    need(visitor, ("admin", "ingest"))
    scope = reader_scope(visitor.token)
    runs = await run_in_threadpool(data.quarantine_runs, services, scope)
    context = {
        "runs": runs,
        "organisation": scope,
        "can_delete": visitor.allows("admin"),
        "can_release": visitor.allows("ingest"),
        "released": _counts(request.query_params.get("released", "")),
    }
    return render(request, "quarantine.html", visitor, context)


def _counts(text: str) -> str:
    """``released/submitted`` from the redirect after a release (anything else: nothing)."""
    numbers = text.split("/")
    return text if len(numbers) == 2 and all(n.isascii() and n.isdigit() for n in numbers) else ""


def _quarantined_run(
    request: Request, visitor: Visitor, services: Services, run_id: str, csrf: str, role: Role
) -> Path | Response:
    """The folder of quarantined run ``run_id`` once ``visitor`` may act on it (``role``,
    CSRF checked); a 404 page when there is no such run, or when it is not one the session
    sees (another organisation's: as absent, see :func:`data.visible`)."""
    need(visitor, role)
    console_auth_of(request).check_csrf(visitor, csrf)
    try:
        folder = data.quarantine_folder(services, run_id)
    except ConfigError:
        folder = None
    if (
        folder is None
        or not folder.is_dir()
        or not data.visible(run_organisation(folder), reader_scope(visitor.token))
    ):
        return render(request, "error.html", visitor, {"message": "no such run"}, 404)
    return folder


@router.post("/quarantine/{run_id}/release")
async def release_quarantine(
    request: Request, run_id: str, visitor: Session, services: ServicesDep, csrf: Csrf = ""
) -> Response:
    """Submit one run's quarantined originals again under the current policy (audited)."""
    folder = _quarantined_run(request, visitor, services, run_id, csrf, "ingest")
    if isinstance(folder, Response):
        return folder
    try:
        done = await run_in_threadpool(data.release_quarantine, services, folder, visitor)
    except ConfigError as exc:  # value-free: the run's organisation record is unreadable
        return render(request, "error.html", visitor, {"message": str(exc)}, 409)
    query = urlencode({"released": f"{done.released}/{done.submitted}"})
    return RedirectResponse(f"/console/quarantine?{query}", status_code=303)


@router.post("/quarantine/{run_id}/delete")
async def delete_quarantine(
    request: Request, run_id: str, visitor: Session, services: ServicesDep, csrf: Csrf = ""
) -> Response:
    """Delete one run's quarantined inputs (audited)."""
    folder = _quarantined_run(request, visitor, services, run_id, csrf, "admin")
    if isinstance(folder, Response):
        return folder
    files = sum(1 for path in folder.iterdir() if path.suffix == ".dcm")
    organisation = run_organisation(folder)
    await run_in_threadpool(shutil.rmtree, folder)
    services.audit.append(
        AuditEvent(
            "quarantine.delete",
            visitor.token.actor,
            "success",
            {
                "run_id": run_id,
                "organisation": organisation,
                "files": files,
                "session": visitor.session.id,
            },
        )
    )
    return RedirectResponse("/console/quarantine", status_code=303)


# -- audit ----------------------------------------------------------------------------------


@router.get("/audit", response_class=HTMLResponse)
async def audit(
    request: Request,
    visitor: Session,
    services: ServicesDep,
    since: str = "",
    until: str = "",
    actor: str = "",
    event: str = "",
    verify: bool = False,
) -> HTMLResponse:
    """Search the audit log (time range, actor, event); verify the chain when asked (it
    reads every entry, so not on every page view)."""
    need(visitor, "admin")
    wanted = data.AuditFilter(since[:32], until[:32], actor[:128], event[:64])
    entries = await run_in_threadpool(data.audit_entries, services, wanted, _AUDIT_ROWS)
    verified = await run_in_threadpool(services.audit.verify) if verify else None
    context = {"filter": wanted, "entries": entries, "verified": verified, "limit": _AUDIT_ROWS}
    return render(request, "audit.html", visitor, context)


# -- tokens ----------------------------------------------------------------------------------


def _tokens_page(
    request: Request, visitor: Visitor, services: Services, status: int = 200, **extra: Any
) -> HTMLResponse:
    context = {"tokens": services.tokens.list(), "roles": ROLES, **extra}
    return render(request, "tokens.html", visitor, context, status)


@router.get("/tokens", response_class=HTMLResponse)
def tokens(request: Request, visitor: Session, services: ServicesDep) -> HTMLResponse:
    """Every token's record (never a token); create and revoke."""
    need(visitor, "admin")
    return _tokens_page(request, visitor, services)


@router.post("/tokens", response_class=HTMLResponse)
def create_token(
    request: Request,
    visitor: Session,
    services: ServicesDep,
    csrf: Csrf = "",
    role: Annotated[str, Form(max_length=32)] = "",
    name: Annotated[str, Form(max_length=64)] = "",
) -> HTMLResponse:
    """Create a token; it is shown once, on this answer only."""
    need(visitor, "admin")
    console_auth_of(request).check_csrf(visitor, csrf)
    try:
        token, secret = services.tokens.create(role, name.strip())
    except ConfigError as exc:
        return _tokens_page(request, visitor, services, error=str(exc), status=400)
    services.audit.append(
        AuditEvent(
            "token.create",
            visitor.token.actor,
            "success",
            {"token_id": token.id, "role": token.role, "session": visitor.session.id},
        )
    )
    return _tokens_page(request, visitor, services, created=token, secret=secret)


@router.post("/tokens/{token_id}/revoke")
def revoke_token(
    request: Request, token_id: str, visitor: Session, services: ServicesDep, csrf: Csrf = ""
) -> Response:
    """Revoke a token: its API calls and its console sessions end at once (audited)."""
    need(visitor, "admin")
    auth = console_auth_of(request)
    auth.check_csrf(visitor, csrf)
    if not services.tokens.revoke(token_id[:32]):
        return render(request, "error.html", visitor, {"message": "no such token"}, 404)
    auth.sessions.close_token(token_id)
    services.audit.append(
        AuditEvent(
            "token.revoke",
            visitor.token.actor,
            "success",
            {"token_id": token_id, "session": visitor.session.id},
        )
    )
    target = CONSOLE_LOGIN if token_id == visitor.token.id else "/console/tokens"
    return RedirectResponse(target, status_code=303)


# -- policy -----------------------------------------------------------------------------------


@router.get("/policy", response_class=HTMLResponse)
def policy(request: Request, visitor: Session, services: ServicesDep) -> HTMLResponse:
    """The resolved policy (``dicomveil profile show``); resolved once per app."""
    rows = getattr(request.app.state, "policy_rows", None)
    if rows is None:
        rows = request.app.state.policy_rows = resolved_rows(services.policy)
    context = {
        "policy": services.policy,
        "options": sorted(o.value for o in services.policy.options),
        "rows": rows,
    }
    return render(request, "policy.html", visitor, context)


# -- re-identification ---------------------------------------------------------------------

_KINDS: Final = ("patient", "study", "accession")


@router.get("/reidentify", response_class=HTMLResponse)
def reidentify_page(request: Request, visitor: Session) -> HTMLResponse:
    """The re-identification form (role ``reidentify`` only)."""
    need(visitor, "reidentify")
    return render(request, "reidentify.html", visitor, {"kinds": _KINDS})


@router.post("/reidentify", response_class=HTMLResponse)
def reidentify_submit(
    request: Request,
    visitor: Session,
    services: ServicesDep,
    csrf: Csrf = "",
    kind: Annotated[str, Form(max_length=16)] = "",
    value: Annotated[str, Form(max_length=128)] = "",
    purpose: Annotated[str, Form(max_length=1000)] = "",
) -> HTMLResponse:
    """Look a pseudonym up: purpose required, audited, the answer shown once (no-store)."""
    need(visitor, "reidentify")
    console_auth_of(request).check_csrf(visitor, csrf)
    context: dict[str, Any] = {"kinds": _KINDS}
    if kind not in _KINDS or not value.strip():
        context["error"] = "choose what to look up and give its pseudonym"
        return render(request, "reidentify.html", visitor, context, 400)
    try:
        matches = reidentify(
            services.vault_opener(),
            services.audit,
            actor=visitor.token.actor,
            purpose=purpose,
            **{kind: value.strip()},
        )
    except AccessDenied as exc:
        context["error"] = str(exc)
        return render(request, "reidentify.html", visitor, context, 403)
    context.update(
        searched=True, matches=[(m.pseudonymous_dicom(), m.original.as_dicom()) for m in matches]
    )
    return render(request, "reidentify.html", visitor, context)
