"""What the gateway audits of a request itself: refusals, archive reads, re-identification.

:class:`~dicomveil.web.middleware.Observe` asks :func:`request_events` once a request is
answered. Three kinds of requests leave an entry (ATNA style, in the same HMAC chain as
everything else; see ``docs/security.md``):

- every request refused for its token (401: none or unknown; 403: the token's role does not
  allow the route), as ``access.denied`` with the token's id and role when it has one; a
  console page refused to its session's role (403) too, with the session's token;
- every request to a re-identification route, whatever its answer (``reid.request``): the
  route's own entry says what was looked up, this one ties the attempt to the token, its role
  and the client; refused attempts are recorded as refusals *and* as attempts;
- every read of the archive (``archive.query`` for QIDO-RS, ``archive.read`` for WADO-RS),
  one per request at study level: the pseudonymous Study Instance UID the path names, or
  those a query answered with (read from its JSON answer, kept only up to
  :data:`QUERY_CAPTURE_LIMIT` bytes).

An entry names the action by method and route *template* (never the path or the query
string, which may hold anything a client typed), the client by the socket's peer address
(``X-Forwarded-For`` is not trusted), the token by its id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from starlette.types import Scope

from dicomveil.audit.entry import AuditEvent
from dicomveil.audit.events import archive_access, reid_request, request_refused
from dicomveil.tokens import Token
from dicomveil.web.routing import RoutePolicy

__all__ = ["QUERY_CAPTURE_LIMIT", "RequestRecord", "request_events"]

QUERY_CAPTURE_LIMIT: Final = 8 << 20
"""Largest QIDO-RS answer read for the study UIDs it names (bytes); past it, UIDs go unnamed
and the entry says ``matches`` unknown."""

_STUDY_UID_TAG: Final = "0020000D"
CONSOLE_PREFIX: Final = "/console"


@dataclass(slots=True)
class RequestRecord:
    """What the middleware learns of one request while answering it."""

    policy: RoutePolicy | None
    token: Token | None = None
    refusal: str = ""
    """Why the token was refused (empty: it was not)."""
    status: int = 0
    body: list[bytes] = field(default_factory=list)
    captured: int = 0
    overflow: bool = False

    @property
    def wants_body(self) -> bool:
        """Whether the answer's bytes are needed (a query's matches)."""
        policy = self.policy
        return policy is not None and policy.query and not self.refusal and not self.overflow

    def capture(self, chunk: bytes) -> None:
        """Keep a chunk of the answer (up to :data:`QUERY_CAPTURE_LIMIT` bytes in all)."""
        self.captured += len(chunk)
        if self.captured > QUERY_CAPTURE_LIMIT:
            self.overflow, self.body = True, []
        else:
            self.body.append(chunk)


def request_events(scope: Scope, record: RequestRecord, template: str) -> list[AuditEvent]:
    """The audit entries of a request answered with ``record.status`` (often none)."""
    policy = record.policy
    unguarded = policy is None or policy.role is None
    if unguarded and record.status == 403 and template.startswith(CONSOLE_PREFIX):
        token = _console_token(scope)
        return [
            request_refused(
                actor=token.actor if token is not None else "<unknown>",
                role=token.role_text if token is not None else None,
                needed="console page",
                client=_client(scope),
                status=403,
                action=f"{scope.get('method', '')} {template}",
                reason="role",
            )
        ]
    if policy is None or policy.role is None:
        return []
    token = record.token
    actor = token.actor if token is not None else "<unknown>"
    role = token.role_text if token is not None else None
    client = _client(scope)
    action = f"{scope.get('method', '')} {template}"
    events: list[AuditEvent] = []
    if record.refusal:
        events.append(
            request_refused(
                actor=actor,
                role=role,
                needed=policy.role,
                client=client,
                status=record.status,
                action=action,
                reason=record.refusal,
            )
        )
    if policy.role == "reidentify":
        events.append(
            reid_request(actor=actor, role=role, client=client, action=action, status=record.status)
        )
    elif policy.role == "read" and token is not None and not record.refusal:
        studies, matches = _studies(scope, record)
        events.append(
            archive_access(
                actor=actor,
                role=role or "",
                client=client,
                action=action,
                status=record.status,
                query=policy.query,
                studies=studies,
                matches=matches,
            )
        )
    return events


def _console_token(scope: Scope) -> Token | None:
    """The token of the console session the request carries, if any."""
    if "app" not in scope:
        return None
    from starlette.requests import Request

    from dicomveil.web.console.auth import console_auth

    request = Request(scope)
    auth = console_auth(request)
    visitor = auth.visitor(request) if auth is not None else None
    return None if visitor is None else visitor.token


def _client(scope: Scope) -> str:
    client: Any = scope.get("client")
    return str(client[0]) if client else "-"


def _studies(scope: Scope, record: RequestRecord) -> tuple[list[str], int | None]:
    params: Any = scope.get("path_params") or {}
    named = [str(params["study"])] if "study" in params else []
    policy = record.policy
    if policy is None or not policy.query or record.status != 200:
        return named, 0 if policy is not None and policy.query else None
    if record.overflow:
        return named, None
    try:
        answer = json.loads(b"".join(record.body))
    except ValueError:
        return named, None
    if not isinstance(answer, list):
        return named, None
    found = [
        str(item[_STUDY_UID_TAG]["Value"][0])
        for item in answer
        if isinstance(item, dict) and item.get(_STUDY_UID_TAG, {}).get("Value")
    ]
    return named + found, len(answer)
