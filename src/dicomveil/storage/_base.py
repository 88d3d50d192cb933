"""What every storage adapter shares: the put/verify template and the error-mapping frame.

Each adapter subclasses :class:`BaseBlobStore` and implements five primitives (``_write``,
``_read``, ``_head``, ``_list``, ``_delete``) on validated keys. The public methods of the
:class:`~dicomveil.ports.BlobStore` protocol live here, once: they validate keys and metadata,
hash the content, write it with its SHA-256 in the metadata, then read the object's info back
and check size and digest before returning. An upload that does not verify is deleted and
reported, so a store never keeps a partial or mismatched object it knows about.
"""

from __future__ import annotations

import builtins
import inspect
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import fields
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

from dicomveil.errors import ConfigError, DicomveilError, StorageError, StorageUnavailable
from dicomveil.ports import BlobInfo
from dicomveil.storage._keys import (
    SHA256_KEY,
    check_content_type,
    check_key,
    check_metadata,
    check_prefix,
    is_valid_key,
)
from dicomveil.storage._values import FileUpload, Payload, StoreSettings, Transfer
from dicomveil.storage.url import split_bucket_url

__all__ = [
    "BaseBlobStore",
    "CloudBlobStore",
    "Translator",
    "invalid_settings",
    "translating",
]

#: Translates one SDK exception into ours, or returns ``None`` for "not an SDK error".
Translator = Callable[[Exception, str], DicomveilError | None]


@contextmanager
def translating(translate: Translator, what: str) -> Iterator[None]:
    """Run the block, re-raising SDK exceptions as ours (``from`` the original).

    Our own exceptions pass through unchanged. Whatever ``translate`` does not recognise is
    still mapped when it is a plain network failure (:class:`ConnectionError`,
    :class:`TimeoutError`); anything else (a programming error) propagates as is.

    Parameters
    ----------
    translate
        The adapter's translator: exception and ``what`` in, our exception (or ``None``) out.
    what
        What was being done, for the message (``"get s3://bucket/key"``). Never content or
        metadata values.
    """
    try:
        yield
    except DicomveilError:
        raise
    except Exception as exc:
        mapped = translate(exc, what)
        if mapped is None and isinstance(exc, ConnectionError | TimeoutError):
            mapped = StorageUnavailable(f"{what}: {type(exc).__name__}")
        if mapped is None:
            raise
        raise mapped from exc


@contextmanager
def invalid_settings(what: str) -> Iterator[None]:
    """Turn a :class:`ValueError` raised while building an SDK client into a ConfigError.

    SDKs reject malformed endpoints or connection strings with plain ``ValueError``; the
    message is not repeated, as it may quote a secret.
    """
    try:
        yield
    except ValueError as exc:
        raise ConfigError(f"{what}: invalid settings ({type(exc).__name__})") from exc


class BaseBlobStore(ABC):
    """Template for the adapters: the public :class:`~dicomveil.ports.BlobStore` methods.

    Subclasses set :attr:`scheme`, assign :attr:`url` in ``__init__`` (a canonical URL without
    credentials, safe to log) and implement the underscore primitives, which receive keys that
    have already been validated.
    """

    scheme: ClassVar[str]
    url: str

    # -- constructors -------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Open the store that ``url`` names, with adapter ``options``."""

    @classmethod
    def from_settings(cls, settings: StoreSettings) -> Self:
        """Open the store named by a settings object (``settings.url``, ``settings.options``)."""
        return cls.from_url(settings.url, **dict(settings.options))

    @classmethod
    def _construct(cls, *args: Any, options: Mapping[str, Any]) -> Self:
        """Call the constructor with ``options``, rejecting unknown names as a ConfigError."""
        remaining = dict(options)
        parameters = list(inspect.signature(cls).parameters)
        known = set(parameters[len(args) :])
        if "transfer" in known:
            known = (known - {"transfer"}) | {field.name for field in fields(Transfer)}
            if "transfer" not in remaining:
                remaining["transfer"] = Transfer.pop_from(remaining)
        unknown = sorted(set(remaining) - known - {"transfer"})
        if unknown:
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)} for {cls.scheme}:// stores "
                f"(known: {', '.join(sorted(known)) or 'none'})"
            )
        return cls(*args, **remaining)

    # -- the BlobStore protocol ---------------------------------------------------------

    def put_file(
        self,
        key: str,
        path: Path,
        *,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
    ) -> BlobInfo:
        """Upload a local file and return its verified info.

        Large files go up in parts (see :class:`Transfer`). The SHA-256 of the file is stored
        in the object's metadata and checked, with the size, after the upload.

        Raises
        ------
        ValueError, TypeError
            For an invalid key, content type or metadata (nothing is uploaded).
        OSError
            When the local file cannot be read.
        StorageError
            When the upload fails or does not verify (the object is then deleted).
        """
        key, metadata = self._check_put(key, content_type, metadata)
        return self._put(key, Payload.from_file(path), content_type, metadata)

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
    ) -> BlobInfo:
        """Store ``data`` under ``key`` and return its verified info (see :meth:`put_file`)."""
        key, metadata = self._check_put(key, content_type, metadata)
        return self._put(key, Payload.from_bytes(data), content_type, metadata)

    def put_files(
        self, uploads: Sequence[FileUpload], *, consume: bool = False
    ) -> list[BlobInfo | StorageError]:
        """Store several local files; return each one's verified info, or why it failed.

        One failed upload does not stop the others. Local stores write the group together:
        one ``fsync`` per folder rather than per object, and with ``consume`` the files are
        moved into the store instead of copied (when they are on the same file system).

        Parameters
        ----------
        uploads
            What to store, in order.
        consume
            The caller gives the files up: the store may move them, and they may be gone
            afterwards, whatever the outcome.

        Raises
        ------
        ValueError, TypeError
            For an invalid key, content type or metadata (nothing is uploaded).
        OSError
            When a local file cannot be read (nothing is uploaded).
        """
        checked = [self._check_put(u.key, u.content_type, u.metadata) for u in uploads]
        payloads = [Payload.from_file(u.path, u.sha256) for u in uploads]
        items = [
            (key, payload, upload.content_type, {**metadata, SHA256_KEY: payload.sha256})
            for (key, metadata), payload, upload in zip(checked, payloads, uploads, strict=True)
        ]
        results: list[BlobInfo | StorageError] = []
        for (key, payload, _, _), error in zip(
            items, self._write_many(items, consume=consume), strict=True
        ):
            if error is not None:
                results.append(error)
                continue
            try:
                results.append(self._verified(key, payload))
            except StorageError as exc:
                results.append(exc)
        return results

    def get_bytes(self, key: str) -> bytes:
        """Return the object's content.

        Raises
        ------
        ObjectNotFound
            When there is no object under ``key``.
        """
        return self._read(check_key(key))

    def get_file(self, key: str, path: Path) -> None:
        """Write the object's content to the local file ``path``, streamed: an object of any
        size needs a buffer's worth of memory, not its size (:meth:`get_bytes` holds it all).

        ``path`` is created or replaced; when the call raises, what it holds is undefined.

        Raises
        ------
        ObjectNotFound
            When there is no object under ``key``.
        OSError
            When ``path`` cannot be written.
        """
        self._read_into(check_key(key), path)

    def head(self, key: str) -> BlobInfo | None:
        """Return the object's info, or ``None`` when it does not exist."""
        return self._head(check_key(key))

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Yield every object whose key starts with ``prefix``, sorted by key.

        Every item has ``key`` and ``size``. Backends that list metadata cheaply (memory,
        file, Azure, GCS) fill in the rest; S3 does not: call :meth:`head` when needed.
        Foreign objects whose names are not valid keys are skipped.
        """
        return self._list(check_prefix(prefix))

    def delete(self, key: str) -> None:
        """Delete the object; deleting a missing object is not an error."""
        self._delete(check_key(key))

    # -- life cycle ---------------------------------------------------------------------

    def close(self) -> None:  # noqa: B027 - a hook: local stores have nothing to release
        """Release network connections (nothing to do for local stores)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- the template -------------------------------------------------------------------

    def _check_put(
        self, key: str, content_type: str, metadata: Mapping[str, str] | None
    ) -> tuple[str, dict[str, str]]:
        check_key(key)
        check_content_type(content_type)
        return key, check_metadata(metadata)

    def _put(
        self, key: str, payload: Payload, content_type: str, metadata: dict[str, str]
    ) -> BlobInfo:
        self._write(key, payload, content_type, {**metadata, SHA256_KEY: payload.sha256})
        return self._verified(key, payload)

    def _verified(self, key: str, payload: Payload) -> BlobInfo:
        """The info of the object just written, checked against ``payload`` (or deleted)."""
        info = self._head(key)
        if info is None or info.size != payload.size or info.sha256 != payload.sha256:
            with suppress(StorageError):
                self._delete(key)
            raise StorageError(
                f"{self.url}: upload of {key!r} did not verify (size or sha256 differ); "
                "the object was deleted"
            )
        return info

    @abstractmethod
    def _write(
        self, key: str, payload: Payload, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        """Store ``payload`` atomically with ``content_type`` and ``metadata`` (incl. sha256)."""

    def _write_many(
        self,
        items: Sequence[tuple[str, Payload, str, Mapping[str, str]]],
        *,
        consume: bool,
    ) -> builtins.list[StorageError | None]:
        """Store ``(key, payload, content_type, metadata)`` items; ``None`` for each success.

        By default one :meth:`_write` after the other (``consume`` changes nothing).
        """
        errors: builtins.list[StorageError | None] = []
        for key, payload, content_type, metadata in items:
            try:
                self._write(key, payload, content_type, metadata)
            except StorageError as exc:
                errors.append(exc)
            else:
                errors.append(None)
        return errors

    @abstractmethod
    def _read(self, key: str) -> bytes:
        """Return the content, or raise ObjectNotFound."""

    def _read_into(self, key: str, path: Path) -> None:
        """Write the content to ``path``; by default through :meth:`_read` (stores that hold
        their objects in memory). Stores of large objects stream instead."""
        data = self._read(key)
        with open(path, "wb") as handle:
            handle.write(data)

    @abstractmethod
    def _head(self, key: str) -> BlobInfo | None:
        """Return the info (``sha256`` taken from the metadata), or ``None``."""

    @abstractmethod
    def _list(self, prefix: str) -> Iterator[BlobInfo]:
        """Yield the infos of the keys starting with ``prefix``, sorted by key."""

    @abstractmethod
    def _delete(self, key: str) -> None:
        """Delete the object if it exists."""


class CloudBlobStore(BaseBlobStore):
    """Shared part of the bucket-based adapters: bucket, key prefix and transfer tuning.

    Parameters
    ----------
    bucket
        The bucket (S3, GCS) or container (Azure); checked against :attr:`bucket_pattern`.
    prefix
        Key prefix inside the bucket (``studies`` or ``studies/``); every key of the store
        lives under it, and listings strip it again.
    transfer
        Timeouts, retries and part sizes (see :class:`Transfer`); the flat options
        ``timeout``, ``retries``, ... of :func:`~dicomveil.storage.open_store` build it.
    """

    #: Regular expression a bucket or container name must match.
    bucket_pattern: ClassVar[str]

    def __init__(self, bucket: str, prefix: str = "", *, transfer: Transfer | None = None) -> None:
        if not isinstance(bucket, str) or not re.fullmatch(self.bucket_pattern, bucket):
            raise ConfigError(f"invalid {self.scheme}:// bucket or container name {bucket!r}")
        prefix = prefix.strip("/")
        if prefix and not is_valid_key(prefix):
            raise ConfigError(f"invalid {self.scheme}:// key prefix {prefix!r}")
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.transfer = transfer or Transfer()
        self.url = f"{self.scheme}://{bucket}/{self.prefix}"

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Open ``scheme://bucket/prefix`` with the adapter's keyword ``options``.

        Raises
        ------
        ConfigError
            For a malformed URL or bucket name, or an unknown option.
        """
        bucket, prefix = split_bucket_url(url, cls.scheme, cls.bucket_pattern)
        return cls._construct(bucket, prefix, options=options)

    def _full(self, key: str) -> str:
        """Return the bucket-level name of ``key``."""
        return self.prefix + key

    def _relative(self, name: str) -> str | None:
        """Return the store key of a bucket-level ``name``, or ``None`` when it is no key."""
        key = name[len(self.prefix) :] if name.startswith(self.prefix) else ""
        return key if is_valid_key(key) else None

    def _what(self, operation: str, key: str = "") -> str:
        """Describe an operation for error messages: ``"get s3://bucket/prefix/key"``."""
        return f"{operation} {self.url}{key}"
