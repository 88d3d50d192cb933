"""Route dependencies: the app's services, and bearer-token authorization by role.

No token (or not a bearer token): 401 with ``WWW-Authenticate: Bearer``. A token that is not
known: 401. A known token whose role lacks the right: 403. The outermost middleware makes
these checks before any body is read (see :mod:`dicomveil.web.routing`), from the role this
module's dependency declares; the dependency checks again (or takes the token the middleware
verified), so a route is never open because of the middleware's absence.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dicomveil.tokens import Role, Token
from dicomveil.web.errors import Forbidden, Unauthorized
from dicomveil.web.middleware import TOKEN_SCOPE_KEY
from dicomveil.web.routing import ROLE_ATTRIBUTE
from dicomveil.web.services import Services

__all__ = [
    "DICOMWEB_PREFIX",
    "ServicesDep",
    "dicomweb_root",
    "get_services",
    "reader_scope",
    "require",
]

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
        verified = request.scope.get(TOKEN_SCOPE_KEY)
        if isinstance(verified, Token) and verified.allows(role):
            request.state.token = verified
            return verified
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
    setattr(authorize, ROLE_ATTRIBUTE, role)
    return authorize


def reader_scope(token: Token) -> str | None:
    """The organisation whose studies ``token`` may read (``None``: every study).

    A token bound to an organisation reads only that organisation's studies; one bound to
    none (the single-tenant default) reads the whole archive. Another organisation's study
    is answered as absent (404), never as forbidden: no oracle of what exists.
    """
    return token.org or None


DICOMWEB_PREFIX = "/dicomweb"


def dicomweb_root(request: Request) -> str:
    """The absolute DICOMweb root URL, for RetrieveURL and BulkDataURI.

    ``public_url`` from the settings when set (behind a proxy). Otherwise the address the
    client actually connected to (the socket's own address, never the ``Host`` header: a
    client could make the server hand out URLs pointing anywhere).
    """
    public = get_services(request).settings.public_url
    if public:
        return public.rstrip("/") + DICOMWEB_PREFIX
    server = request.scope.get("server")
    scheme = request.url.scheme
    if not server:
        return f"{scheme}://localhost{DICOMWEB_PREFIX}"
    host, port = str(server[0]), server[1]
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(scheme)
    netloc = host if port in (None, default) else f"{host}:{port}"
    return f"{scheme}://{netloc}{DICOMWEB_PREFIX}"
