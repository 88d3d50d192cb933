"""Console sessions: an opaque cookie value, a server-side row, an expiry, a CSRF token.

A session is opened by pasting a bearer token into the login form. The cookie holds 256
random bits; the table (``$DICOMVEIL_HOME/console-sessions.sqlite``, mode 0600, shared by
every server process) keeps only their SHA-256, the id of the token that opened the session,
its CSRF token and its expiry. The session's role is always the token's *current* one: the
caller checks the token still exists, so revoking a token ends its sessions at once.

This module imports no web framework.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["SESSIONS_FILE", "Session", "SessionStore"]

SESSIONS_FILE: Final = "console-sessions.sqlite"

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS sessions (
    digest TEXT PRIMARY KEY,
    token_id TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class Session:
    """An open session (never the cookie value itself).

    Attributes
    ----------
    id:
        A short public id of the session, for the audit log (a prefix of its digest).
    token_id:
        The id of the token that opened it.
    csrf:
        The token console forms must echo.
    expires:
        When it ends (seconds since the epoch).
    """

    id: str
    token_id: str
    csrf: str
    expires: float


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class SessionStore:
    """The session table.

    Parameters
    ----------
    path:
        The SQLite file (created with mode 0600).
    lifetime:
        Seconds a session lasts after login (no sliding renewal).
    clock:
        The time source (tests move it).
    """

    def __init__(self, path: Path, lifetime: float, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.lifetime = lifetime
        self._clock = clock
        self._ready = False
        self._lock = threading.Lock()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if not self._ready:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        with closing(sqlite3.connect(self.path, timeout=10, isolation_level=None)) as connection:
            if not self._ready:
                connection.execute(_SCHEMA)
                self._ready = True
            yield connection

    def open(self, token_id: str) -> tuple[Session, str]:
        """Open a session for the token ``token_id``; return it and the cookie value."""
        secret = secrets.token_urlsafe(32)
        now = self._clock()
        session = Session(
            _digest(secret)[:12], token_id, secrets.token_urlsafe(32), now + self.lifetime
        )
        with self._connect() as db:
            db.execute("DELETE FROM sessions WHERE expires <= ?", (now,))
            db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                (_digest(secret), token_id, session.csrf, now, session.expires),
            )
        return session, secret

    def find(self, secret: str) -> Session | None:
        """The live session whose cookie value is ``secret``, else ``None``."""
        if not secret or len(secret) > 128:
            return None
        digest = _digest(secret)
        with self._connect() as db:
            row = db.execute(
                "SELECT token_id, csrf, expires FROM sessions WHERE digest = ? AND expires > ?",
                (digest, self._clock()),
            ).fetchone()
        if row is None:
            return None
        return Session(digest[:12], str(row[0]), str(row[1]), float(row[2]))

    def close(self, secret: str) -> bool:
        """End the session whose cookie value is ``secret``; return whether it was open."""
        with self._connect() as db:
            cursor = db.execute("DELETE FROM sessions WHERE digest = ?", (_digest(secret),))
        return cursor.rowcount > 0

    def close_token(self, token_id: str) -> int:
        """End every session a token opened (when it is revoked); return how many."""
        with self._connect() as db:
            cursor = db.execute("DELETE FROM sessions WHERE token_id = ?", (token_id,))
        return int(cursor.rowcount)
