"""The ``[uploads]`` table: limits of direct uploads and the database of their progress.

Example TOML::

    [uploads]
    max_objects = 2000            # objects per upload
    max_object_bytes = 4294967296 # checked at complete (a PUT URL cannot cap its size)
    expires_seconds = 3600        # how long the upload URLs are valid
    stale_after_seconds = 3600    # then, never completed: objects deleted, upload expired
    sweep_seconds = 600           # how often the gateway looks for such uploads
    # default: the shared database (--database, DICOMVEIL_DATABASE_URL), else SQLite in home
    database_url = "postgresql+psycopg://dicomveil@db/dicomveil"

The incoming store is the ``[cluster]`` table's ``incoming_url`` (``DICOMVEIL_INCOMING_URL``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicomveil.database import state_url
from dicomveil.errors import ConfigError

__all__ = ["UploadSettings", "default_database_url"]


def default_database_url(home: Path, shared: str | None = None) -> str:
    """The shared database (``--database``, ``DICOMVEIL_DATABASE_URL``) when one is set,
    else ``sqlite:///<home>/uploads.sqlite``."""
    return state_url(home, "uploads", shared)


@dataclass(frozen=True, slots=True)
class UploadSettings:
    """Limits of one direct upload (see the module's documentation)."""

    database_url: str
    max_objects: int = 2000
    max_object_bytes: int = 4 << 30
    expires_seconds: int = 3600
    stale_after_seconds: int = 3600
    """Grace after the URLs expired (a PUT started in time may still be running)."""
    sweep_seconds: int = 600

    @classmethod
    def load(cls, config: Path | None, *, home: Path, shared: str | None = None) -> UploadSettings:
        """Read ``[uploads]`` of ``config`` (defaults without one).

        Raises
        ------
        ConfigError
            Unknown keys or values out of range.
        """
        from dicomveil.settings import read_section

        table: dict[str, Any] = dict(read_section(config, "uploads")) if config else {}
        known = {"database_url", "max_objects", "max_object_bytes", "expires_seconds"}
        known |= {"stale_after_seconds", "sweep_seconds"}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(f"unknown [uploads] settings: {', '.join(unknown)}")
        table.setdefault("database_url", default_database_url(home, shared))
        try:
            settings = cls(**table)
        except TypeError:
            raise ConfigError("malformed [uploads] settings") from None
        numbers = (settings.max_objects, settings.max_object_bytes, settings.expires_seconds,
                   settings.stale_after_seconds, settings.sweep_seconds)  # fmt: skip
        if any(not isinstance(n, int) or isinstance(n, bool) or n <= 0 for n in numbers):
            raise ConfigError("[uploads] limits must be positive integers")
        if settings.expires_seconds > 7 * 24 * 3600:
            raise ConfigError("[uploads] expires_seconds is at most 7 days (S3's limit)")
        return settings
