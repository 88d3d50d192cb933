"""Route dependencies: the app's services, and bearer-token authorization by role.

No token (or not a bearer token): 401 with ``WWW-Authenticate: Bearer``. A token that is not
known: 401. A known token whose role lacks the right: 403.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dicomveil.web.errors import Forbidden, Unauthorized
from dicomveil.web.services import Services
from dicomveil.web.tokens import Role, Token

__all__ = ["DICOMWEB_PREFIX", "ServicesDep", "dicomweb_root", "get_services", "require"]

_bearer = HTTPBearer(auto_error=False, description="A token from `dicomveil tokens create`.")


def get_services(request: Request) -> Services:
    """The app's :class:`Services`."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def require(role: Role) -> Callable[..., Awaitable[Token]]:
    """Return a dependency that admits only tokens whose role includes ``role``."""

    async def authorize(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Token:
        if credentials is None and role == "read":  # a console session, for GETs only
            from dicomveil.web.console.auth import cookie_reader

            session_token = cookie_reader(request)
            if session_token is not None and session_token.allows(role):
                request.state.token = session_token
                return session_token
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Unauthorized()
        token = get_services(request).tokens.verify(credentials.credentials.strip())
        if token is None:
            raise Unauthorized("the bearer token is not valid")
        if not token.allows(role):
            raise Forbidden(f"the token's role ({token.role}) does not allow this ({role})")
        request.state.token = token
        return token

    authorize.__name__ = f"require_{role}"
    return authorize


DICOMWEB_PREFIX = "/dicomweb"


def dicomweb_root(request: Request) -> str:
    """The absolute DICOMweb root URL, for RetrieveURL and BulkDataURI.

    ``public_url`` from the settings when set (behind a proxy), else the request's own base.
    A Host header without a port (some clients send one) gets the port the server listens
    on, so the URLs work for a client talking to the server directly.
    """
    public = get_services(request).settings.public_url
    if public:
        return public.rstrip("/") + DICOMWEB_PREFIX
    url = request.base_url
    server = request.scope.get("server")
    if url.port is None and server and server[1] not in (None, 80, 443):
        url = url.replace(port=int(server[1]))
    return str(url).rstrip("/") + DICOMWEB_PREFIX
