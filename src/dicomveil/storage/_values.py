"""Value objects the storage adapters share: transfer tuning, payloads, settings, infos."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, Any, Protocol

from dicomveil.errors import ConfigError
from dicomveil.ports import BlobInfo
from dicomveil.storage._keys import SHA256_KEY

__all__ = ["FileUpload", "MiB", "Payload", "StoreSettings", "Transfer", "info_from_metadata"]

MiB = 1024 * 1024


class StoreSettings(Protocol):
    """Anything that names a store: a URL plus adapter options (the settings model's shape)."""

    @property
    def url(self) -> str:
        """The store's URL, for example ``s3://bucket/prefix``."""
        ...

    @property
    def options(self) -> Mapping[str, Any]:
        """Keyword options for the adapter (credentials, endpoint, transfer tuning)."""
        ...


@dataclass(frozen=True, slots=True)
class Transfer:
    """Network tuning shared by the cloud adapters.

    Parameters
    ----------
    timeout
        Seconds to wait for a connection or for a response, per request.
    retries
        How many times a transient failure (connection refused, 5xx, throttling) is retried
        before :class:`~dicomveil.errors.StorageUnavailable` is raised.
    multipart_threshold
        Objects of at least this many bytes are uploaded in parts (S3 multipart, Azure blocks,
        GCS resumable chunks).
    part_size
        Size of each part, in bytes.
    max_concurrency
        Parts uploaded at the same time (S3 and Azure; GCS uploads chunks in sequence).
    """

    timeout: float = 60.0
    retries: int = 5
    multipart_threshold: int = 8 * MiB
    part_size: int = 8 * MiB
    max_concurrency: int = 4

    def __post_init__(self) -> None:
        minimums: dict[str, float] = {
            "retries": 0,
            "multipart_threshold": 5 * MiB,
            "part_size": 5 * MiB,
            "max_concurrency": 1,
        }
        for name, low in minimums.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"option {name!r} must be an integer of at least {low}")
        timeout = self.timeout
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigError("option 'timeout' must be a positive number of seconds")

    @classmethod
    def pop_from(cls, options: dict[str, Any]) -> Transfer:
        """Remove the transfer options from ``options`` and return them as a :class:`Transfer`."""
        names = {field.name for field in fields(cls)}
        return cls(**{name: options.pop(name) for name in names & options.keys()})


@dataclass(frozen=True, slots=True)
class Payload:
    """Content to upload: a local file or bytes, with its size and SHA-256 (hex).

    The file must not change while it is being uploaded; the digest is taken first.
    """

    source: Path | bytes
    size: int
    sha256: str

    @classmethod
    def from_bytes(cls, data: bytes) -> Payload:
        """Wrap ``data``, hashing it."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        data = bytes(data)
        return cls(data, len(data), hashlib.sha256(data).hexdigest())

    @classmethod
    def from_file(cls, path: Path, sha256: str | None = None) -> Payload:
        """Wrap the file at ``path``, hashing it in chunks (unless its ``sha256`` is given:
        the caller took it as it wrote the file, and the file is not read again)."""
        path = Path(path)
        if sha256 is not None:
            return cls(path, path.stat().st_size, sha256)
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
            size = handle.tell()
        return cls(path, size, digest)

    @contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        """Yield a seekable binary stream over the content."""
        if isinstance(self.source, bytes):
            yield io.BytesIO(self.source)
        else:
            with self.source.open("rb") as handle:
                yield handle

    def read(self) -> bytes:
        """Return the whole content."""
        return self.source if isinstance(self.source, bytes) else self.source.read_bytes()


@dataclass(frozen=True, slots=True)
class FileUpload:
    """One local file to store with :meth:`~dicomveil.storage.BaseBlobStore.put_files`."""

    key: str
    path: Path
    content_type: str
    metadata: Mapping[str, str] | None = None
    sha256: str | None = None
    """The file's SHA-256 (hex) when the caller took it while writing the file: the store
    does not read the file again to hash it. Remote stores still compare it with the
    digest the server reports; a local store records it as given."""


def info_from_metadata(
    key: str, size: int, content_type: str | None, metadata: Mapping[str, str] | None
) -> BlobInfo:
    """Build a :class:`BlobInfo`, moving the reserved ``sha256`` entry out of the metadata."""
    user = dict(metadata or {})
    digest = user.pop(SHA256_KEY, None)
    return BlobInfo(key=key, size=size, content_type=content_type, metadata=user, sha256=digest)
