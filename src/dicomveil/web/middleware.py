"""The outermost ASGI middleware: body-size limit, metrics, access log, last-resort 500.

The access log line names the method, the route *template*, the status and the duration:
never the path (it holds UIDs) nor the query string (a client may type anything into it).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dicomveil.web.errors import PayloadTooLarge, error_response, server_error
from dicomveil.web.metrics import Metrics

__all__ = ["Observe"]

access_log = logging.getLogger("dicomveil.web.access")


def _route_template(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class Observe:
    """Wrap an ASGI app: refuse oversized bodies, count and time requests, log them.

    Parameters
    ----------
    app:
        The application.
    max_body_bytes:
        Largest request body; a larger ``Content-Length`` is refused at once with 413, and
        a body that grows past it while streaming makes the receiving route fail with 413.
    metrics:
        Where requests are counted.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = {"status": 0, "received": 0}
        limit = self.max_body_bytes

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:
                    raise PayloadTooLarge(f"the request body exceeds {limit} bytes")
            return message

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = int(message["status"])
            await send(message)

        try:
            if _declared_length(scope) > limit:
                response = error_response(
                    413, "PayloadTooLarge", f"the request body exceeds {limit} bytes"
                )
                await response(scope, receive, tracking_send)
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


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0
