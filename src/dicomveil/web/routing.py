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

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

__all__ = [
    "NO_STORE_TAG",
    "ROLE_ATTRIBUTE",
    "Resolved",
    "RoutePolicy",
    "RouteTable",
    "flat_routes",
]

ROLE_ATTRIBUTE: Final = "dicomveil_role"
"""Attribute of an authorization dependency naming the role it requires."""

NO_STORE_TAG: Final = "re-identification"
"""Routes with this OpenAPI tag answer with ``Cache-Control: no-store``."""

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
    """

    role: str | None
    body_limit: int
    no_store: bool = False


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where a request goes: a route's policy, or the methods the path allows (405)."""

    policy: RoutePolicy | None
    allowed: frozenset[str] = frozenset()


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


def flat_routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """The routes of an application, with those of included routers in their place.

    Recent FastAPI versions keep an included router as one entry (its routes carry their
    full paths: routers are included here without a prefix); older ones copy its routes.
    """
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None and not isinstance(route, APIRoute):
            yield from flat_routes(included.routes)
        else:
            yield route


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
                no_store = NO_STORE_TAG in (route.tags or ())
                found = RoutePolicy(_role(route.dependant), limit, no_store)
            else:  # documentation pages and assets
                found = RoutePolicy(None, self.json_limit)
            self._policies[id(route)] = found
        return found

    def resolve(self, scope: Scope) -> Resolved:
        """The route ``scope`` goes to (``policy`` ``None``: none; ``allowed``: 405)."""
        allowed: set[str] = set()
        for route in flat_routes(self._routes):
            match, _child = route.matches(scope)
            if match is Match.FULL:
                return Resolved(self.policy(route))
            if match is Match.PARTIAL:
                allowed |= set(getattr(route, "methods", None) or ())
        return Resolved(None, frozenset(allowed))
