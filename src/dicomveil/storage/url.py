"""Storage URLs: which adapter serves which URL, and how the URL is taken apart.

========================  ==========================  =====================================
URL                       adapter                     notes
========================  ==========================  =====================================
``/srv/out``, ``out``     :class:`FileBlobStore`      a plain path means ``file://``
``file:///srv/out``       :class:`FileBlobStore`      the default backend
``memory://name``         :class:`MemoryBlobStore`    one store per name per process
``s3://bucket/prefix``    :class:`S3BlobStore`        ``pip install 'dicomveil[s3]'``
``az://container/prefix`` :class:`AzureBlobStore`     ``pip install 'dicomveil[azure]'``
``gs://bucket/prefix``    :class:`GcsBlobStore`       ``pip install 'dicomveil[gcs]'``
========================  ==========================  =====================================

Credentials never go into a URL (URLs end up in logs): a URL with a user, password, query or
fragment is refused. Pass credentials as options or through each SDK's usual environment.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urlsplit

from dicomveil.errors import ConfigError
from dicomveil.storage._keys import is_valid_key

if TYPE_CHECKING:
    from dicomveil.storage._base import BaseBlobStore

__all__ = ["SCHEMES", "StoreURL", "open_store", "parse_store_url", "split_bucket_url"]

#: URL scheme -> (module, class) of the adapter. Modules import their SDK lazily.
SCHEMES: dict[str, tuple[str, str]] = {
    "az": ("dicomveil.storage.azure", "AzureBlobStore"),
    "file": ("dicomveil.storage.file", "FileBlobStore"),
    "gs": ("dicomveil.storage.gcs", "GcsBlobStore"),
    "memory": ("dicomveil.storage.memory", "MemoryBlobStore"),
    "s3": ("dicomveil.storage.s3", "S3BlobStore"),
}

_SCHEME_PREFIX = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):")


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A storage URL taken apart: ``scheme://netloc/path`` (``path`` without leading ``/``)."""

    scheme: str
    netloc: str
    path: str


def parse_store_url(url: str) -> StoreURL:
    """Split and check a storage URL; a plain path becomes a ``file`` URL.

    Raises
    ------
    ConfigError
        When the URL is empty, has an unknown scheme, or carries credentials, a query or a
        fragment.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("storage URL must be a non-empty string")
    if "://" not in url:
        match = _SCHEME_PREFIX.match(url)
        if match and len(match["scheme"]) > 1:
            raise ConfigError(f"malformed storage URL {url!r}: expected scheme://...")
        return StoreURL("file", "", str(Path(url).expanduser().absolute()).lstrip("/"))
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"malformed storage URL {_redact(url)!r}") from exc
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        known = ", ".join(f"{name}://" for name in sorted(SCHEMES))
        raise ConfigError(f"unknown storage URL scheme {scheme!r} (known: {known})")
    if parts.username is not None or parts.password is not None or port is not None:
        raise ConfigError(
            f"storage URL {_redact(url)!r} must not carry credentials or a port; "
            "pass them as options or through the environment"
        )
    if parts.query or parts.fragment:
        raise ConfigError(
            f"storage URL {_redact(url)!r} must not have a query or fragment; "
            "pass settings (and SAS tokens) as options"
        )
    return StoreURL(scheme, parts.netloc, unquote(parts.path).lstrip("/"))


def split_bucket_url(url: str, scheme: str, bucket_pattern: str) -> tuple[str, str]:
    """Return ``(bucket, prefix)`` of a ``scheme://bucket/prefix`` URL.

    The prefix is normalised to end with ``/`` (or to be empty) and must obey the key rules.

    Raises
    ------
    ConfigError
        When the scheme differs, the bucket name does not match ``bucket_pattern``, or the
        prefix is not a valid key path.
    """
    parsed = parse_store_url(url)
    if parsed.scheme != scheme:
        raise ConfigError(f"expected a {scheme}:// URL, got {parsed.scheme}://")
    if not re.fullmatch(bucket_pattern, parsed.netloc):
        raise ConfigError(f"invalid bucket or container name {parsed.netloc!r} in {url!r}")
    prefix = parsed.path.strip("/")
    if prefix and not is_valid_key(prefix):
        raise ConfigError(f"invalid prefix {prefix!r} in {url!r}")
    return parsed.netloc, f"{prefix}/" if prefix else ""


def open_store(url: str, **options: Any) -> BaseBlobStore:
    """Open the blob store that ``url`` names.

    Parameters
    ----------
    url
        ``file:///path`` or a plain path, ``memory://name``, ``s3://bucket/prefix``,
        ``az://container/prefix`` or ``gs://bucket/prefix``.
    **options
        Adapter options (credentials, endpoint, ``timeout``, ``retries``, part sizes...); see
        each adapter's constructor. Unknown options are refused.

    Returns
    -------
    BaseBlobStore
        The adapter instance: a :class:`~dicomveil.ports.BlobStore` that can also be closed.
        Cloud adapters hold connections: close them with ``close()`` or use the store as a
        context manager.

    Raises
    ------
    ConfigError
        For a malformed URL, an unknown scheme or option, a missing SDK (with the
        ``pip install 'dicomveil[...]'`` command to fix it) or missing credentials.

    Examples
    --------
    >>> store = open_store("memory://example")
    >>> store.put_bytes("a/b.txt", b"hi", content_type="text/plain").size
    2
    """
    parsed = parse_store_url(url)
    module_name, class_name = SCHEMES[parsed.scheme]
    adapter = getattr(importlib.import_module(module_name), class_name)
    return cast("BaseBlobStore", adapter.from_url(url, **options))


def _redact(url: str) -> str:
    """Return ``url`` without user, password, query or fragment (they may hold secrets)."""
    return re.sub(r"[?#].*$", "?***", re.sub(r"(?<=://)[^/@]*@", "***@", url))
