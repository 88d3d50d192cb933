"""Opening a batch destination by URL, with the options batches pass to every adapter.

The batch service retries unavailable destinations itself (with backoff, per object, then it
stops resumably), so cloud adapters are opened with no retries of their own: a destination that
is down is noticed in seconds, not after two layers of retries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dicomveil.errors import ConfigError
from dicomveil.paths import contained_path
from dicomveil.storage import BaseBlobStore, open_store, parse_store_url
from dicomveil.storage._keys import RESERVED_PREFIX
from dicomveil.storage.file import META_DIR

__all__ = ["CLOUD_SCHEMES", "local_root", "open_destination", "sweep_partial_writes"]

#: Schemes whose adapters take network options (``timeout``, ``retries``...).
CLOUD_SCHEMES = frozenset({"s3", "az", "gs"})
_ENDPOINT_SCHEMES = frozenset({"s3", "gs"})


def open_destination(
    url: str,
    *,
    endpoint_url: str | None = None,
    timeout: float | None = None,
    **options: Any,
) -> BaseBlobStore:
    """Open the store a batch uploads to.

    Parameters
    ----------
    url
        ``file:///path`` (or a path), ``s3://bucket/prefix``, ``az://container/prefix``,
        ``gs://bucket/prefix`` or ``memory://name``.
    endpoint_url
        Another S3 (or GCS) endpoint; for S3 the standard ``AWS_ENDPOINT_URL`` works too.
    timeout
        Seconds per network request (cloud stores only).
    **options
        More adapter options (credentials, ``profile_name``...), passed as they are.

    Raises
    ------
    ConfigError
        For a malformed URL, an endpoint given for a scheme that takes none, missing SDKs or
        credentials.
    """
    scheme = parse_store_url(url).scheme
    if endpoint_url and scheme not in _ENDPOINT_SCHEMES:
        raise ConfigError(
            f"--endpoint-url applies to s3:// (and gs://) destinations, not {scheme}://"
        )
    if scheme in CLOUD_SCHEMES:
        options.setdefault("retries", 0)
        if timeout is not None:
            options.setdefault("timeout", timeout)
        if endpoint_url:
            options.setdefault("endpoint_url", endpoint_url)
    return open_store(url, **options)


def local_root(url: str) -> Path | None:
    """Return the folder of a ``file://`` URL (or plain path), ``None`` for other schemes."""
    parsed = parse_store_url(url)
    if parsed.scheme != "file":
        return None
    return Path("/" + parsed.path)


def sweep_partial_writes(url: str, prefix: str) -> int:
    """Delete the temporary files a killed writer left under ``prefix`` of a ``file://`` store.

    :class:`~dicomveil.storage.FileBlobStore` writes each object to a temporary file named
    ``.dicomveil-tmp-*`` beside it and renames it into place; a process killed mid-write leaves
    that file behind. Listings never show it (the name is reserved), but a reader walking the
    folder would. Call this only while no other writer can be writing under ``prefix`` (a
    batch holds its lock, and ``prefix`` is its own id). Other schemes have nothing to sweep:
    their uploads are atomic on the server.

    Returns
    -------
    int
        How many files were deleted.
    """
    root = local_root(url)
    if root is None:
        return 0
    removed = 0
    bases = (
        contained_path(root, prefix, whole=True),
        contained_path(root, [META_DIR, prefix], whole=True),
    )
    for base in bases:
        for path in base.rglob(RESERVED_PREFIX + "tmp-*") if base.is_dir() else ():
            if path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
    return removed
