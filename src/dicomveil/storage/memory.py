"""In-memory blob store: a first-class, thread-safe backend for tests and local development.

``MemoryBlobStore()`` is a private, empty store. ``open_store("memory://name")`` returns the
process-wide store of that name, so the parts of one process configured with the same URL
(the web gateway and the pipeline, say) see the same objects; the store is forgotten once
nothing refers to it any more.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from dicomveil.errors import ConfigError, ObjectNotFound
from dicomveil.ports import BlobInfo
from dicomveil.storage._base import BaseBlobStore
from dicomveil.storage._values import Payload, info_from_metadata
from dicomveil.storage.url import parse_store_url

__all__ = ["MemoryBlobStore"]

_NAMED: weakref.WeakValueDictionary[str, MemoryBlobStore] = weakref.WeakValueDictionary()
_NAMED_LOCK = threading.Lock()
_NAME = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class _Entry:
    data: bytes
    content_type: str
    metadata: Mapping[str, str] = field(default_factory=dict)


class MemoryBlobStore(BaseBlobStore):
    """A dict-backed :class:`~dicomveil.ports.BlobStore`, safe to share between threads.

    Parameters
    ----------
    name
        Name shown in :attr:`url` (``memory://<name>``).
    """

    scheme = "memory"

    def __init__(self, name: str = "default") -> None:
        self.url = f"memory://{name}"
        self._objects: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryBlobStore:
        """Return the process-wide store named by ``memory://name`` (created when needed).

        Raises
        ------
        ConfigError
            When the URL is not ``memory://name`` or an option is given (none exist).
        """
        parsed = parse_store_url(url)
        if parsed.scheme != cls.scheme or parsed.path or not _NAME.fullmatch(parsed.netloc):
            raise ConfigError(f"expected memory://name (letters, digits, '._-'), got {url!r}")
        if options:
            unknown = ", ".join(sorted(options))
            raise ConfigError(f"unknown option(s) {unknown} for memory:// stores (known: none)")
        with _NAMED_LOCK:
            store = _NAMED.get(parsed.netloc)
            if store is None:
                store = cls(parsed.netloc)
                _NAMED[parsed.netloc] = store
            return store

    def _write(
        self, key: str, payload: Payload, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        entry = _Entry(payload.read(), content_type, dict(metadata))
        with self._lock:
            self._objects[key] = entry

    def _read(self, key: str) -> bytes:
        with self._lock:
            entry = self._objects.get(key)
        if entry is None:
            raise ObjectNotFound(f"{self.url}: no object {key!r}")
        return entry.data

    def _head(self, key: str) -> BlobInfo | None:
        with self._lock:
            entry = self._objects.get(key)
        return None if entry is None else _info(key, entry)

    def _list(self, prefix: str) -> Iterator[BlobInfo]:
        with self._lock:
            snapshot = sorted(
                ((key, entry) for key, entry in self._objects.items() if key.startswith(prefix)),
                key=lambda item: item[0],
            )
        for key, entry in snapshot:
            yield _info(key, entry)

    def _delete(self, key: str) -> None:
        with self._lock:
            self._objects.pop(key, None)


def _info(key: str, entry: _Entry) -> BlobInfo:
    return info_from_metadata(key, len(entry.data), entry.content_type, entry.metadata)
