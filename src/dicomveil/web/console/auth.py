"""Who is on the console: the session cookie, login, logout, CSRF and page roles.

The cookie is HttpOnly, SameSite=Strict and Secure (named ``__Host-dicomveil-session``, so
no subdomain can set or widen it). ``console_secure_cookie = false`` drops ``Secure`` (and the
``__Host-`` prefix) for plain-HTTP testing on loopback only: never turn it off on a network.

A session admits its token's role on console pages and, for the ``read`` right only, on
read-only DICOMweb GETs (:func:`cookie_reader`); it never admits STOW, batches or the
re-identification API, which keep requiring the bearer token itself.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Final

from fastapi import Request
from fastapi.responses import Response

from dicomveil.audit import AuditLog
from dicomveil.audit.entry import AuditEvent, Outcome
from dicomveil.tokens import Role, Token, TokenStore
from dicomveil.web.console.sessions import Session, SessionStore

__all__ = [
    "CONSOLE_LOGIN",
    "SAFE_METHODS",
    "ConsoleAuth",
    "LoginRequired",
    "PageForbidden",
    "Visitor",
    "cookie_reader",
]

CONSOLE_LOGIN: Final = "/console/login"
SAFE_METHODS: Final = frozenset({"GET", "HEAD"})
LOGIN_EVENT: Final = "console.login"
LOGOUT_EVENT: Final = "console.logout"


class LoginRequired(Exception):
    """No live session: the console answers with the login page."""


class PageForbidden(Exception):
    """The session's role may not open this page (403), or a form's CSRF token is wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Visitor:
    """A live session and the token behind it."""

    session: Session
    token: Token

    def allows(self, role: Role) -> bool:
        """Whether the session's token has ``role``'s right."""
        return self.token.allows(role)


class ConsoleAuth:
    """Sessions of one app.

    Parameters
    ----------
    sessions, tokens, audit:
        The session table, the token store and the audit log.
    secure:
        Mark the cookie ``Secure`` (and name it with the ``__Host-`` prefix).
    """

    def __init__(
        self, sessions: SessionStore, tokens: TokenStore, audit: AuditLog, *, secure: bool
    ) -> None:
        self.sessions = sessions
        self.tokens = tokens
        self.audit = audit
        self.secure = secure
        self.cookie = "__Host-dicomveil-session" if secure else "dicomveil-session"
        self.started = time.monotonic()

    def visitor(self, request: Request) -> Visitor | None:
        """The request's live session and its (still existing) token, else ``None``."""
        secret = request.cookies.get(self.cookie)
        if not secret:
            return None
        session = self.sessions.find(secret)
        if session is None:
            return None
        token = next((t for t in self.tokens.list() if t.id == session.token_id), None)
        if token is None:  # revoked since the login
            self.sessions.close(secret)
            return None
        return Visitor(session, token)

    def login(self, response: Response, secret_token: str) -> Token | None:
        """Open a session for ``secret_token`` and set the cookie; ``None`` when not valid.

        Both outcomes are audited (a refused login without any part of what was typed).
        """
        token = self.tokens.verify(secret_token.strip())
        if token is None:
            self._audit(LOGIN_EVENT, "<unknown>", "denied", {"reason": "invalid token"})
            return None
        session, cookie = self.sessions.open(token.id)
        response.set_cookie(
            self.cookie,
            cookie,
            max_age=int(self.sessions.lifetime),
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )
        self._audit(LOGIN_EVENT, token.actor, "success", {"session": session.id})
        return token

    def logout(self, request: Request, response: Response) -> None:
        """End the request's session (audited) and clear the cookie."""
        visitor = self.visitor(request)
        secret = request.cookies.get(self.cookie, "")
        if visitor is not None and self.sessions.close(secret):
            self._audit(
                LOGOUT_EVENT, visitor.token.actor, "success", {"session": visitor.session.id}
            )
        response.delete_cookie(
            self.cookie, path="/", secure=self.secure, httponly=True, samesite="strict"
        )

    def check_csrf(self, visitor: Visitor, submitted: str) -> None:
        """Refuse a form whose CSRF field is not the session's token."""
        if not hmac.compare_digest(visitor.session.csrf.encode(), submitted.encode()):
            raise PageForbidden("the form is stale or was not sent by this console; reload it")

    def _audit(self, event: str, actor: str, outcome: Outcome, details: dict[str, str]) -> None:
        self.audit.append(AuditEvent(event, actor, outcome, details))


def console_auth(request: Request) -> ConsoleAuth | None:
    """The app's :class:`ConsoleAuth`, when the console is enabled."""
    found: ConsoleAuth | None = getattr(request.app.state, "console_auth", None)
    return found


def cookie_reader(request: Request) -> Token | None:
    """The token of the request's session for a read-only GET, else ``None``.

    Used by the bearer-token dependency for the ``read`` right only.
    """
    auth = console_auth(request)
    if auth is None or request.method not in SAFE_METHODS:
        return None
    visitor = auth.visitor(request)
    return None if visitor is None else visitor.token
