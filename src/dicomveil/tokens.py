"""Bearer tokens of the gateway: created once, shown once, stored only as a hash.

A token is ``dvt_`` followed by 256 random bits (URL-safe base64). The store,
``$DICOMVEIL_HOME/tokens.json`` (mode 0600), keeps for each token an opaque id, a name, its
role (or roles), its creation time, optionally an expiry time and an organisation code, the
time it was last used (recorded at most once a minute per token, not on every request) and the
SHA-256 of the token; a SHA-256 of a 256-bit random value cannot be inverted or guessed, so no
slow hash is needed. Writers hold an exclusive lock and replace the file atomically; readers
reload it when it changes, so a running server accepts new tokens and drops revoked ones
without a restart. An expired token verifies as no token (the gateway answers 401). Entries
written before expiry, organisation and last use existed load unchanged: the fields are
optional.

With a shared database (``--database``, ``DICOMVEIL_DATABASE_URL``) the same records live in
its ``dicomveil_tokens`` table instead (:mod:`dicomveil.tokens_sql`), for every host.

Separation of duties: ``admin`` manages tokens and settings and has no data access; a token
holds at most one of ``ingest`` (submit originals) and ``read`` (read the archive) unless it
is created with ``allow_ingest_and_read`` (unsafe: with deterministic pseudonyms, submitting
an invented original carrying a known hospital number and reading the archive is a lookup
from that number to the patient's studies); ``admin`` is held alone.

A core module (no web framework): the gateway checks tokens with it, ``dicomveil tokens``
manages them (edges never import each other, see docs/architecture.md).
"""

from __future__ import annotations

import base64
import builtins
import fcntl
import hashlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Literal

from dicomveil.errors import ConfigError

__all__ = ["PERMISSIONS", "ROLES", "Role", "Token", "TokenStore", "check_roles", "token_store"]

Role = Literal["ingest", "read", "reidentify", "admin"]
ROLES: Final[tuple[Role, ...]] = ("ingest", "read", "reidentify", "admin")

PERMISSIONS: Final[dict[Role, frozenset[Role]]] = {
    "ingest": frozenset({"ingest"}),
    "read": frozenset({"read"}),
    "reidentify": frozenset({"reidentify"}),
    "admin": frozenset({"admin"}),
}
"""What each role may do: each role only itself. ``admin`` (tokens, settings, metrics,
quarantine and audit pages) has no data access; only ``reidentify`` re-identifies."""

TOKENS_FILE: Final = "tokens.json"
_PREFIX: Final = "dvt_"
_FORMAT: Final = 1
LAST_USED_INTERVAL: Final = 60.0
"""Seconds between two recordings of one token's last use (a write per request would not do)."""


@dataclass(frozen=True, slots=True)
class Token:
    """A token's public record (never the token itself)."""

    id: str
    name: str
    role: Role
    created: str
    expires: str = ""
    """When the token stops working (ISO 8601, UTC), or empty: it never expires."""
    org: str = ""
    """The organisation (tenant) code the token is bound to, or empty."""
    last_used: str = field(default="", compare=False)
    """When the token was last accepted (ISO 8601, UTC; to the minute), or empty: never."""
    extra_roles: tuple[Role, ...] = ()
    """Roles held besides :attr:`role` (see :func:`check_roles`)."""

    @property
    def roles(self) -> tuple[Role, ...]:
        """Every role the token holds, :attr:`role` first."""
        return (self.role, *self.extra_roles)

    @property
    def role_text(self) -> str:
        """The roles as one word for lists and audit entries: ``read`` or ``ingest+read``."""
        return "+".join(self.roles)

    @property
    def actor(self) -> str:
        """Who acts with this token, for the audit log: ``token:<id>`` (a name can be
        reused or changed; the id is unique and is what ``tokens list`` shows)."""
        return f"token:{self.id}"

    def allows(self, needed: Role) -> bool:
        """Whether one of this token's roles includes ``needed``."""
        return any(needed in PERMISSIONS[role] for role in self.roles)

    def expired(self, now: datetime | None = None) -> bool:
        """Whether the token has expired at ``now`` (default: the current time)."""
        if not self.expires:
            return False
        try:
            end = datetime.fromisoformat(self.expires)
        except ValueError:
            return True  # an unreadable expiry fails closed
        if end.tzinfo is None:
            end = end.replace(tzinfo=UTC)
        return (now or datetime.now(UTC)) >= end


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class TokenStore:
    """The token file.

    Parameters
    ----------
    path:
        The JSON file (created with mode 0600 on the first token).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._by_hash: dict[str, Token] = {}
        self._recorded: dict[str, float] = {}

    # -- file access ---------------------------------------------------------------------

    def _read(self) -> list[dict[str, str]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"token file {self.path} cannot be read ({type(exc).__name__})"
            ) from exc
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ConfigError(f"token file {self.path} has an unknown format")
        entries: list[dict[str, str]] = data.get("tokens", [])
        return entries

    @contextmanager
    def _locked(self) -> Iterator[list[dict[str, str]]]:
        """Yield the entries under an exclusive lock; write them back when the block ends."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = self.path.with_name(f".{self.path.name}.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            entries = self._read()
            yield entries
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            out = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(out, "w", encoding="utf-8") as handle:
                json.dump({"format": _FORMAT, "tokens": entries}, handle, indent=1)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        finally:
            os.close(fd)

    # -- operations ----------------------------------------------------------------------

    def create(
        self,
        role: str | Sequence[str],
        name: str = "",
        *,
        expires: timedelta | None = None,
        org: str = "",
        allow_ingest_and_read: bool = False,
    ) -> tuple[Token, str]:
        """Create a token; return its record and the token (shown once, never stored).

        ``role`` is one role or several (see :func:`check_roles`); ``expires`` is the
        token's lifetime from now (``None``: it never expires); ``org`` binds it to an
        organisation code.

        Raises
        ------
        ConfigError
            A refused role combination (see :func:`check_roles`), a name longer than 64
            characters or with control characters, a lifetime that is not positive, or an
            organisation code that is not 1 to 32 letters, digits, ``-`` or ``_``.
        """
        roles = check_roles(
            [role] if isinstance(role, str) else list(role),
            allow_ingest_and_read=allow_ingest_and_read,
        )
        if len(name) > 64 or not name.isprintable():
            raise ConfigError("a token name is up to 64 printable characters")
        if org and not _ORG_CODE.fullmatch(org):
            raise ConfigError("an organisation code is 1 to 32 letters, digits, '-' or '_'")
        if expires is not None and expires <= timedelta(0):
            raise ConfigError("a token's lifetime must be positive")
        now = datetime.now(UTC)
        end = "" if expires is None else (now + expires).isoformat(timespec="seconds")
        secret = _PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        token = Token(
            id=secrets.token_hex(6),
            name=name,
            role=roles[0],
            created=now.isoformat(timespec="seconds"),
            expires=end,
            org=org,
            extra_roles=roles[1:],
        )
        with self._locked() as entries:
            entries.append(_entry(token, _digest(secret)))
        return token, secret

    def list(self) -> list[Token]:
        """Return every token's record, oldest first."""
        return [_token(entry) for entry in self._read()]

    def revoke(self, token_id: str) -> bool:
        """Delete the token with ``token_id``; return whether it existed."""
        with self._locked() as entries:
            kept = [entry for entry in entries if entry.get("id") != token_id]
            found = len(kept) != len(entries)
            entries[:] = kept
        return found

    def find(self, ref: str) -> builtins.list[Token]:
        """The tokens ``ref`` names: the one with that id, else every one with that name."""
        tokens = self.list()
        by_id = [token for token in tokens if token.id == ref]
        return by_id or [token for token in tokens if ref and token.name == ref]

    def verify(self, secret: str) -> Token | None:
        """Return the token's record when ``secret`` is a valid, unexpired token, else ``None``.

        An accepted token's last use is recorded (at most once per
        :data:`LAST_USED_INTERVAL` per token and process).
        """
        if not secret.startswith(_PREFIX) or len(secret) > 128:
            return None
        self._refresh()
        token = self._by_hash.get(_digest(secret))
        if token is None or token.expired():
            return None
        self._record_use(token.id)
        return token

    def _record_use(self, token_id: str) -> None:
        """Write the token's last-use time unless this process did so less than a minute ago."""
        now = time.monotonic()
        with self._lock:
            previous = self._recorded.get(token_id)
            if previous is not None and now - previous < LAST_USED_INTERVAL:
                return
            self._recorded[token_id] = now
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            with self._locked() as entries:
                for entry in entries:
                    if entry.get("id") == token_id:
                        entry["last_used"] = stamp
        except (OSError, ConfigError):
            pass  # the use still counts; recording it is best effort

    def _version(self) -> tuple[int, int] | None:
        """What changes whenever the stored tokens change (``None``: no tokens stored)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def _refresh(self) -> None:
        stamp = self._version()
        with self._lock:
            if stamp == self._stamp and stamp is not None:
                return
            entries = self._read() if stamp is not None else []
            self._by_hash = {entry["sha256"]: _token(entry) for entry in entries}
            self._stamp = stamp


_ORG_CODE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")


def check_roles(roles: Sequence[str], *, allow_ingest_and_read: bool = False) -> tuple[Role, ...]:
    """Validate the roles of a new token (separation of duties); return them, deduplicated.

    Raises
    ------
    ConfigError
        No role, an unknown role, ``admin`` with another role (administration has no data
        access), or both ``ingest`` and ``read`` without ``allow_ingest_and_read``.
    """
    known: list[Role] = []
    for role in roles:
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r} (known: {', '.join(ROLES)})")
        if role not in known:
            known.append(role)
    if not known:
        raise ConfigError(f"a token needs a role (known: {', '.join(ROLES)})")
    if "admin" in known and len(known) > 1:
        raise ConfigError("the admin role is held alone: it has no data access")
    if {"ingest", "read"} <= set(known) and not allow_ingest_and_read:
        raise ConfigError(
            "a token holds ingest or read, not both: one holder could look up a hospital "
            "number's studies (--allow-ingest-and-read overrides; unsafe)"
        )
    return tuple(known)


def _entry(token: Token, digest: str) -> dict[str, str]:
    """The stored form of ``token``; optional fields only when set (old readers ignore them)."""
    entry = {"id": token.id, "name": token.name, "role": token.role, "created": token.created}
    optional = (
        ("expires", token.expires),
        ("org", token.org),
        ("extra_roles", ",".join(token.extra_roles)),
    )
    entry.update({key: value for key, value in optional if value})
    return {**entry, "sha256": digest}


def _token(entry: dict[str, str]) -> Token:
    role = entry.get("role", "")
    extra = [r for r in entry.get("extra_roles", "").split(",") if r]
    if role not in ROLES or any(r not in ROLES for r in extra):
        raise ConfigError("token file holds a token with an unknown role")
    return Token(
        entry["id"],
        entry.get("name", ""),
        role,
        entry.get("created", ""),
        expires=entry.get("expires", ""),
        org=entry.get("org", ""),
        last_used=entry.get("last_used", ""),
        extra_roles=tuple(extra),  # type: ignore[arg-type]  # checked above
    )


def token_store(home: Path, database_url: str | None = None) -> TokenStore:
    """Return the token store: in the shared database ``database_url`` (else
    ``$DICOMVEIL_DATABASE_URL``) when one is set, else ``tokens.json`` in the state folder."""
    from dicomveil.home import shared_database_url

    shared = shared_database_url(database_url)
    if shared:
        from dicomveil.tokens_sql import SqlTokenStore

        return SqlTokenStore.open(shared, Path(home) / TOKENS_FILE)
    return TokenStore(Path(home) / TOKENS_FILE)
