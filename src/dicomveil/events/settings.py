"""The ``[events]`` table: where signed CloudEvents go, and how hard to try.

Example TOML::

    [events]
    endpoints = ["https://hooks.example.org/dicomveil"]
    secret_env = "DICOMVEIL_EVENTS_SECRET"   # the variable holding the HMAC secret
    types = ["org.dicomveil.study.complete"] # default: every type
    max_attempts = 10                        # then the delivery is dead
    backoff_seconds = 2.0                    # doubles each attempt, up to max_backoff_seconds
    max_backoff_seconds = 600.0
    timeout = 10.0
    # default: the shared database (--database, DICOMVEIL_DATABASE_URL), else SQLite in home
    database_url = "postgresql+psycopg://dicomveil@db/dicomveil"

The secret never goes in the file: it is read from the environment variable named by
``secret_env`` (several secrets, comma-separated, while rotating: all sign, the first is new).
No ``endpoints``: no event is recorded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from dicomveil.database import state_url
from dicomveil.errors import ConfigError
from dicomveil.events.cloudevents import TYPES

__all__ = ["EventSettings", "default_database_url"]

_KNOWN: Final = frozenset(
    {
        "endpoints", "secret_env", "types", "max_attempts", "backoff_seconds",
        "max_backoff_seconds", "timeout", "database_url",
    }
)  # fmt: skip


def default_database_url(home: Path, shared: str | None = None) -> str:
    """The shared database (``--database``, ``DICOMVEIL_DATABASE_URL``) when one is set,
    else ``sqlite:///<home>/events.sqlite``."""
    return state_url(home, "events", shared)


@dataclass(frozen=True, slots=True)
class EventSettings:
    """See the module's documentation."""

    database_url: str
    endpoints: tuple[str, ...] = ()
    secrets: tuple[bytes, ...] = field(default=(), repr=False)
    types: frozenset[str] = TYPES
    max_attempts: int = 10
    backoff_seconds: float = 2.0
    max_backoff_seconds: float = 600.0
    timeout: float = 10.0

    @property
    def enabled(self) -> bool:
        """Whether any endpoint is configured."""
        return bool(self.endpoints)

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failure."""
        return float(min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (attempts - 1)))

    @classmethod
    def load(
        cls,
        config: Path | None,
        *,
        home: Path,
        environ: Mapping[str, str] | None = None,
        shared: str | None = None,
    ) -> EventSettings:
        """Read ``[events]`` of ``config``.

        Raises
        ------
        ConfigError
            Unknown keys, bad endpoints (only ``http(s)://``), unknown types, or endpoints
            without a secret.
        """
        from dicomveil.settings import read_section

        table: dict[str, Any] = dict(read_section(config, "events")) if config else {}
        unknown = sorted(set(table) - _KNOWN)
        if unknown:
            raise ConfigError(f"unknown [events] settings: {', '.join(unknown)}")
        endpoints = table.pop("endpoints", [])
        if not isinstance(endpoints, list) or not all(_is_http(e) for e in endpoints):
            raise ConfigError("[events] endpoints must be a list of http(s):// URLs")
        types = table.pop("types", sorted(TYPES))
        if not isinstance(types, list) or not set(types) <= TYPES:
            raise ConfigError(f"[events] types must be among {', '.join(sorted(TYPES))}")
        variable = str(table.pop("secret_env", "DICOMVEIL_EVENTS_SECRET"))
        env = os.environ if environ is None else environ
        secrets = tuple(s.strip().encode() for s in env.get(variable, "").split(",") if s.strip())
        if endpoints and not secrets:
            raise ConfigError(f"[events] endpoints need a secret in ${variable}")
        if any(len(s) < 16 for s in secrets):
            raise ConfigError(f"[events] the secret in ${variable} must be 16 bytes or more")
        table.setdefault("database_url", default_database_url(home, shared))
        try:
            settings = cls(
                endpoints=tuple(endpoints), secrets=secrets, types=frozenset(types), **table
            )
        except TypeError:
            raise ConfigError("malformed [events] settings") from None
        if settings.max_attempts < 1 or settings.backoff_seconds <= 0 or settings.timeout <= 0:
            raise ConfigError("[events] max_attempts, backoff_seconds, timeout must be positive")
        return settings


def _is_http(url: object) -> bool:
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.username
