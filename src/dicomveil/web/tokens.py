"""Bearer tokens of the gateway: created once, shown once, stored only as a hash.

A token is ``dvt_`` followed by 256 random bits (URL-safe base64). The store,
``$DICOMVEIL_HOME/tokens.json`` (mode 0600), keeps for each token an opaque id, a name, a
role, its creation time and the SHA-256 of the token; a SHA-256 of a 256-bit random value
cannot be inverted or guessed, so no slow hash is needed. Writers hold an exclusive lock and
replace the file atomically; readers reload it when it changes, so a running server accepts
new tokens and drops revoked ones without a restart.

This module imports no web framework: ``dicomveil tokens`` uses it too.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

from dicomveil.errors import ConfigError

__all__ = ["PERMISSIONS", "ROLES", "Role", "Token", "TokenStore", "token_store"]

Role = Literal["ingest", "read", "reidentify", "admin"]
ROLES: Final[tuple[Role, ...]] = ("ingest", "read", "reidentify", "admin")

PERMISSIONS: Final[dict[Role, frozenset[Role]]] = {
    "ingest": frozenset({"ingest"}),
    "read": frozenset({"read"}),
    "reidentify": frozenset({"reidentify"}),
    "admin": frozenset({"admin", "ingest", "read"}),
}
"""What each role may do. ``admin`` may ingest and read, but only ``reidentify`` re-identifies."""

TOKENS_FILE: Final = "tokens.json"
_PREFIX: Final = "dvt_"
_FORMAT: Final = 1


@dataclass(frozen=True, slots=True)
class Token:
    """A token's public record (never the token itself)."""

    id: str
    name: str
    role: Role
    created: str

    @property
    def actor(self) -> str:
        """Who acts with this token, for the audit log: ``token:<name or id>``."""
        return f"token:{self.name or self.id}"

    def allows(self, needed: Role) -> bool:
        """Whether this token's role includes ``needed``."""
        return needed in PERMISSIONS[self.role]


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

    def create(self, role: str, name: str = "") -> tuple[Token, str]:
        """Create a token; return its record and the token (shown once, never stored).

        Raises
        ------
        ConfigError
            Unknown role, or a name longer than 64 characters or with control characters.
        """
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r} (known: {', '.join(ROLES)})")
        if len(name) > 64 or not name.isprintable():
            raise ConfigError("a token name is up to 64 printable characters")
        secret = _PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        token = Token(
            id=secrets.token_hex(6),
            name=name,
            role=role,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        with self._locked() as entries:
            entries.append({**asdict(token), "sha256": _digest(secret)})
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

    def verify(self, secret: str) -> Token | None:
        """Return the token's record when ``secret`` is a valid token, else ``None``."""
        if not secret.startswith(_PREFIX) or len(secret) > 128:
            return None
        self._refresh()
        return self._by_hash.get(_digest(secret))

    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp == self._stamp and stamp is not None:
                return
            entries = self._read() if stamp is not None else []
            self._by_hash = {entry["sha256"]: _token(entry) for entry in entries}
            self._stamp = stamp


def _token(entry: dict[str, str]) -> Token:
    role = entry.get("role", "")
    if role not in ROLES:
        raise ConfigError("token file holds a token with an unknown role")
    return Token(entry["id"], entry.get("name", ""), role, entry.get("created", ""))


def token_store(home: Path) -> TokenStore:
    """Return the token store of the state folder ``home``."""
    return TokenStore(Path(home) / TOKENS_FILE)
