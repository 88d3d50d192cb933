"""The outermost ASGI middleware: the checks made before any body is read, metrics, access
log, last-resort 500.

Before the application sees a request, :class:`Observe` resolves its route (see
:mod:`dicomveil.web.routing`) and answers at once, without reading a byte of the body: 405
with every allowed method in ``Allow``; 401/403 when the route's role is not allowed by the
bearer token; 413 when the declared ``Content-Length`` exceeds the route's limit (a chunked
body is counted as it streams, and fails with 413 past the limit). Every answer carries
``X-Content-Type-Options: nosniff``, re-identification answers ``Cache-Control: no-store``.

The access log line names the method, the route *template*, the status and the duration:
never the path (it holds UIDs) nor the query string (a client may type anything into it).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dicomveil.tokens import Token, TokenStore
from dicomveil.web.errors import PayloadTooLarge, error_response, server_error
from dicomveil.web.metrics import Metrics
from dicomveil.web.routing import Resolved, RouteTable

__all__ = ["Observe"]

access_log = logging.getLogger("dicomveil.web.access")
limits_log = logging.getLogger("dicomveil.web.limits")

TOKEN_SCOPE_KEY: Final = "dicomveil.token"
"""Where :class:`Observe` leaves the verified token in the request scope."""

_ALWAYS: Final = [(b"x-content-type-options", b"nosniff")]
_NO_STORE: Final = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]


def _route_template(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class Observe:
    """Wrap an ASGI app: refuse early (see the module), count and time requests, log them.

    Parameters
    ----------
    app:
        The application.
    routes:
        The application's route table (policies per route).
    tokens:
        The bearer tokens.
    metrics:
        Where requests are counted.
    """

    def __init__(
        self, app: ASGIApp, *, routes: RouteTable, tokens: TokenStore, metrics: Metrics
    ) -> None:
        self.app = app
        self.routes, self.tokens, self.metrics = routes, tokens, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = {"status": 0, "received": 0}
        resolved = self.routes.resolve(scope)
        policy = resolved.policy
        limit = self._limit(scope, resolved)
        extra = _ALWAYS + (_NO_STORE if policy is not None and policy.no_store else [])

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    limits_log.warning("body limit hit: %s bytes", limit)
                    raise PayloadTooLarge(f"the request body exceeds {limit} bytes")
            return message

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = int(message["status"])
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        try:
            refusal = self._refusal(scope, resolved, limit)
            if refusal is not None:
                await refusal(scope, receive, tracking_send)
            else:
                await self.app(scope, limited_receive, tracking_send)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: answer, never leak
            if state["status"]:
                access_log.error("response interrupted: %s", type(exc).__name__)
            else:
                await server_error(exc)(scope, receive, tracking_send)
        finally:
            seconds = time.perf_counter() - started
            route = _route_template(scope)
            method = str(scope.get("method", ""))
            self.metrics.observe(method, route, state["status"], seconds)
            access_log.info("%s %s %s %.1fms", method, route, state["status"], seconds * 1000)

    def _limit(self, scope: Scope, resolved: Resolved) -> int:
        """The route's body limit; a JSON body gets the JSON limit even on an upload route
        (the batches route takes a JSON folder request or uploaded files)."""
        json_limit = self.routes.json_limit
        if resolved.policy is None:
            return json_limit
        kind = _headers(scope).get(b"content-type", b"").split(b";")[0].strip().lower()
        if kind == b"application/json":
            return min(resolved.policy.body_limit, json_limit)
        return resolved.policy.body_limit

    def _refusal(self, scope: Scope, resolved: Resolved, limit: int) -> JSONResponse | None:
        """The answer made without reading the body, or ``None`` to let the app answer."""
        headers = _headers(scope)
        # the body is left unread: the connection cannot be reused after a refusal
        close = {"Connection": "close"} if _has_body(headers) else {}
        if resolved.policy is None:
            if not resolved.allowed:
                return None  # the router's 404
            allow = ", ".join(sorted(resolved.allowed))
            return error_response(
                405, "MethodNotAllowed", "method not allowed", {"Allow": allow, **close}
            )
        role = resolved.policy.role
        if role is not None:
            refused = self._authorize(scope, headers, role)
            if refused is not None:
                status, code, message = refused
                auth = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
                return error_response(status, code, message, {**auth, **close})
        if _declared_length(headers) > limit:
            limits_log.warning("body limit hit: declared length above %s bytes", limit)
            message = f"the request body exceeds {limit} bytes"
            return error_response(413, "PayloadTooLarge", message, close)
        return None

    def _authorize(
        self, scope: Scope, headers: dict[bytes, bytes], role: str
    ) -> tuple[int, str, str] | None:
        """Check the bearer token for ``role``: ``None`` when allowed (the token is left in
        the scope under :data:`TOKEN_SCOPE_KEY`), else (status, code, message)."""
        scheme, _, secret = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            session = _session_reader(scope, role)
            if session is not None:
                scope[TOKEN_SCOPE_KEY] = session
                return None
            return 401, "Unauthorized", "a valid bearer token is required"
        token = self.tokens.verify(secret.strip())
        if token is None:
            return 401, "Unauthorized", "the bearer token is not valid"
        if not token.allows(role):  # type: ignore[arg-type]
            return 403, "Forbidden", f"the token's role ({token.role}) does not allow this ({role})"
        scope[TOKEN_SCOPE_KEY] = token
        return None


def _session_reader(scope: Scope, role: str) -> Token | None:
    """The console session's token for a read-only GET needing only ``read``, else ``None``
    (a session never admits uploads, batches or re-identification)."""
    if role != "read" or scope.get("method") not in ("GET", "HEAD") or "app" not in scope:
        return None
    from starlette.requests import Request

    from dicomveil.web.console.auth import cookie_reader

    token = cookie_reader(Request(scope))
    return token if token is not None and token.allows("read") else None


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {bytes(name).lower(): bytes(value) for name, value in scope.get("headers", ())}


def _has_body(headers: dict[bytes, bytes]) -> bool:
    return _declared_length(headers) > 0 or b"transfer-encoding" in headers


def _declared_length(headers: dict[bytes, bytes]) -> int:
    try:
        return int(headers.get(b"content-length", b"0"))
    except ValueError:
        return 0
