"""``OPTIONS`` on every resource, and CORS for viewers hosted on other origins.

``OPTIONS`` answers 204 with an ``Allow`` header naming the methods the resource's routes
accept (PS3.18 §8.9 lets a server answer at least that; RFC 9110 §9.3.7). A CORS preflight
from an allowed origin gets the matching ``Access-Control-Allow-*`` headers as well; from any
other origin it gets none, so the browser refuses. CORS is off unless ``cors_origins`` lists
origins, and never allows credentials: cross-origin callers send a bearer token, the
console's session cookie is same-site only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["OptionsAndCors", "allowed_methods"]

_ALLOW_HEADERS: Final = "Authorization, Accept, Content-Type, X-Dicomveil-Purpose"
_EXPOSE: Final = "Warning, Content-Location, Location, Content-Type"
_MAX_AGE: Final = "600"
_PROBED: Final = ("GET", "POST", "PUT", "DELETE", "PATCH")
_READS: Final = ("GET", "HEAD")


def allowed_methods(routes: Iterable[BaseRoute], path: str) -> list[str]:
    """The methods the app's ``routes`` accept at ``path`` (with HEAD for GET, and OPTIONS).

    Each route is asked whether it fully matches the path for each method (included
    routers answer for their own routes); a mount (static files, the viewer) serves reads.
    """
    methods: set[str] = set()
    for route in routes:
        for method in _PROBED:
            scope = {"type": "http", "path": path, "method": method, "root_path": ""}
            if route.matches(scope)[0] is Match.FULL:
                methods.update(_READS if isinstance(route, Mount) else (method,))
    if not methods:
        return []
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods | {"OPTIONS"})


class OptionsAndCors:
    """ASGI middleware: answer ``OPTIONS``, add CORS headers for allowed origins.

    Parameters
    ----------
    app:
        The application (its router is asked which methods a path accepts).
    origins:
        Allowed origins (``scheme://host[:port]``); empty: no CORS.
    """

    def __init__(self, app: ASGIApp, *, origins: Iterable[str] = ()) -> None:
        self.app = app
        self.origins = frozenset(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        allowed = origin is not None and origin in self.origins
        if scope["method"] == "OPTIONS":
            await self._options(scope, headers, origin if allowed else None, send)
            return
        if not allowed:
            await self.app(scope, receive, send)
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out["Access-Control-Allow-Origin"] = str(origin)
                out["Access-Control-Expose-Headers"] = _EXPOSE
                out.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, with_cors)

    async def _options(
        self, scope: Scope, headers: Headers, origin: str | None, send: Send
    ) -> None:
        app = scope.get("app")
        routes = getattr(getattr(app, "router", None), "routes", ())
        methods = allowed_methods(routes, scope["path"])
        status = 204 if methods else 404
        out = [(b"allow", ", ".join(methods).encode())] if methods else []
        out.append((b"vary", b"Origin"))
        wanted = headers.get("access-control-request-method", "")
        if origin is not None and methods and wanted in methods:
            out += [
                (b"access-control-allow-origin", origin.encode()),
                (b"access-control-allow-methods", ", ".join(methods).encode()),
                (b"access-control-allow-headers", _ALLOW_HEADERS.encode()),
                (b"access-control-max-age", _MAX_AGE.encode()),
            ]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": b""})
