"""Ports: the interfaces between the application services and the adapters at the edges.

Each port is a :class:`typing.Protocol`; adapters implement them structurally. The services in
:mod:`dicomveil.pipeline` depend on these protocols only, never on an SDK.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["BlobInfo", "BlobStore", "Clock"]


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """What a store knows of one object."""

    key: str
    size: int
    content_type: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    sha256: str | None = None


@runtime_checkable
class BlobStore(Protocol):
    """An object store addressed by keys relative to the store's root (``a/b/c.dcm``).

    Writes are atomic: an object is either absent or complete, never partial.
    """

    url: str

    def put_file(
        self,
        key: str,
        path: Path,
        *,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
    ) -> BlobInfo:
        """Upload a local file (multipart/block upload for large files) and return its info."""
        ...

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
    ) -> BlobInfo:
        """Store ``data`` under ``key`` and return its info."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """Return the object's content; raise :class:`~dicomveil.errors.ObjectNotFound`."""
        ...

    def get_file(self, key: str, path: Path) -> None:
        """Write the object's content to the local file ``path``, streamed (any size)."""
        ...

    def head(self, key: str) -> BlobInfo | None:
        """Return the object's info, or ``None`` when it does not exist."""
        ...

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Yield every object whose key starts with ``prefix``."""
        ...

    def delete(self, key: str) -> None:
        """Delete the object; deleting a missing object is not an error."""
        ...


class Clock(Protocol):
    """Source of the current time, injected so the core stays deterministic in tests."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware (UTC)."""
        ...
