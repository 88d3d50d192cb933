"""What the outermost middleware must know of a request's route before reading its body.

The framework reads a JSON body before it resolves a route's dependencies (the bearer token
among them), so authorization and body limits cannot be left to the routes: a 1 GiB JSON
body would be parsed before a 401. :class:`RouteTable` tells, from the request line and
headers alone, which route a request goes to and that route's :class:`RoutePolicy`: the
role its token needs (from the route's own ``require(role)`` dependency, so the two never
disagree), the largest body it takes (upload routes: ``max_body_bytes``; JSON routes and
routes without a body: ``max_json_bytes``) and whether its answers must not be cached.
A path that exists for other methods only gets the union of their methods, for ``Allow``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match, Route, compile_path
from starlette.types import Scope

__all__ = [
    "NO_STORE_TAG",
    "QUERY_TAG",
    "ROLE_ATTRIBUTE",
    "FlatRoute",
    "Resolved",
    "RoutePolicy",
    "RouteTable",
    "flat_routes",
]

ROLE_ATTRIBUTE: Final = "dicomveil_role"
"""Attribute of an authorization dependency naming the role it requires."""

NO_STORE_TAG: Final = "re-identification"
"""Routes with this OpenAPI tag answer with ``Cache-Control: no-store``."""

QUERY_TAG: Final = "QIDO-RS"
"""Routes with this OpenAPI tag are archive queries (audited with the studies they answer)."""

_JSON: Final = frozenset({"application/json"})


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """What a route demands before its body is read.

    Attributes
    ----------
    role:
        The role a bearer token must allow (``None``: no token needed).
    body_limit:
        Largest request body, in bytes.
    no_store:
        Answers carry ``Cache-Control: no-store``.
    query:
        An archive query (QIDO-RS): its answer names the studies it found.
    """

    role: str | None
    body_limit: int
    no_store: bool = False
    query: bool = False


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where a request goes: a route's policy, or the methods the path allows (405)."""

    policy: RoutePolicy | None
    allowed: frozenset[str] = frozenset()
    template: str = ""
    """The route's path template (with its routers' prefixes), when a route was found."""


def _role(dependant: Dependant) -> str | None:
    role = getattr(dependant.call, ROLE_ATTRIBUTE, None)
    if isinstance(role, str):
        return role
    for child in dependant.dependencies:
        found = _role(child)
        if found is not None:
            return found
    return None


def _takes_uploads(route: APIRoute) -> bool:
    body: Any = (route.openapi_extra or {}).get("requestBody", {})
    types = {kind.split(";")[0].strip().lower() for kind in body.get("content", {})}
    return bool(types - _JSON)


def _route_path(scope: Scope) -> str:
    """The request path below the application's root path (as the router matches it)."""
    path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


@dataclass(frozen=True, slots=True)
class FlatRoute:
    """One route of the application, with its full path (prefixes of included routers).

    ``regex`` is ``None`` for routes that match by themselves (mounted applications)."""

    route: BaseRoute
    path: str
    regex: re.Pattern[str] | None
    methods: frozenset[str]


def flat_routes(routes: Iterable[BaseRoute], prefix: str = "") -> Iterator[FlatRoute]:
    """The routes of an application, with those of included routers in their place.

    Recent FastAPI versions keep an included router as one entry (its routes carry the
    paths of their own router; the include's prefix is added here); older ones copy its
    routes.
    """
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None and not isinstance(route, APIRoute):
            context = getattr(route, "include_context", None)
            yield from flat_routes(included.routes, prefix + (getattr(context, "prefix", "") or ""))
        elif isinstance(route, Route):
            path = prefix + route.path
            regex = compile_path(path)[0] if prefix else route.path_regex
            yield FlatRoute(route, path, regex, frozenset(route.methods or ()))
        else:
            yield FlatRoute(route, prefix + str(getattr(route, "path", "")), None, frozenset())


class RouteTable:
    """Resolve requests to their :class:`RoutePolicy` (see the module's documentation).

    Parameters
    ----------
    routes:
        The application's routes (read at each lookup: routes added later count).
    upload_limit, json_limit:
        Body limits of upload routes and of every other route.
    """

    def __init__(self, routes: Iterable[BaseRoute], *, upload_limit: int, json_limit: int):
        self._routes = routes
        self.upload_limit, self.json_limit = upload_limit, json_limit
        self._policies: dict[int, RoutePolicy] = {}

    def policy(self, route: BaseRoute) -> RoutePolicy:
        """The policy of one route (computed once)."""
        found = self._policies.get(id(route))
        if found is None:
            if isinstance(route, APIRoute):
                limit = self.upload_limit if _takes_uploads(route) else self.json_limit
                tags = route.tags or ()
                found = RoutePolicy(
                    _role(route.dependant), limit, NO_STORE_TAG in tags, QUERY_TAG in tags
                )
            else:  # documentation pages and assets
                found = RoutePolicy(None, self.json_limit)
            self._policies[id(route)] = found
        return found

    def resolve(self, scope: Scope) -> Resolved:
        """The route ``scope`` goes to (``policy`` ``None``: none; ``allowed``: 405)."""
        allowed: set[str] = set()
        path, method = _route_path(scope), str(scope.get("method", ""))
        for flat in flat_routes(self._routes):
            if flat.regex is None:
                if flat.route.matches(scope)[0] is Match.FULL:
                    return Resolved(self.policy(flat.route), template=flat.path)
            elif flat.regex.match(path):
                if method in flat.methods:
                    return Resolved(self.policy(flat.route), template=flat.path)
                allowed |= flat.methods
        return Resolved(None, frozenset(allowed))
