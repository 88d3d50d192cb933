"""Google Cloud Storage blob store: ``gs://bucket/prefix``, through google-cloud-storage.

Needs ``pip install 'dicomveil[gcs]'``; the SDK is imported when a store is created, never
when this module is imported.

- **Credentials**: application default credentials (``GOOGLE_APPLICATION_CREDENTIALS``,
  ``gcloud auth application-default login``, the metadata server), or the ``credentials``
  option (a ``google.auth`` credentials object) and ``project``.
- **Emulator**: when ``STORAGE_EMULATOR_HOST`` (or the ``endpoint_url`` option) is set, the
  store talks to that endpoint with anonymous credentials.
- **Uploads** above ``multipart_threshold`` are resumable uploads in chunks of ``part_size``
  bytes (a multiple of 256 KiB), sent in sequence; the SDK checks a CRC32C of the whole
  object. The SHA-256 goes into the ``sha256`` metadata entry and is checked, with the size,
  after the upload.
"""

from __future__ import annotations

import http.client
import importlib
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from dicomveil._optional import require
from dicomveil.errors import (
    ConfigError,
    DicomveilError,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
)
from dicomveil.ports import BlobInfo
from dicomveil.storage._base import CloudBlobStore, invalid_settings, translating
from dicomveil.storage._values import Payload, Transfer, info_from_metadata

__all__ = ["GcsBlobStore", "map_gcs_errors"]

_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_CHUNK_QUANTUM = 256 * 1024
_RETRY_DEADLINE = 600.0
_EMULATOR_PROJECT = "dicomveil-emulator"


def _status(exc: Exception) -> int | None:
    """Return the HTTP status an SDK exception carries, if any."""
    from google.api_core import exceptions as api
    from google.cloud.storage import exceptions as media

    if isinstance(exc, api.GoogleAPICallError):
        return int(exc.code) if exc.code is not None else None
    if isinstance(exc, media.InvalidResponse):
        return int(exc.response.status_code)
    return None


def _is_transient(exc: Exception) -> bool:
    """Return whether ``exc`` is worth retrying (network trouble, throttling, 5xx)."""
    import requests
    import urllib3.exceptions
    from google.auth import exceptions as auth

    if isinstance(exc, auth.TransportError):
        return True
    network = (
        requests.ConnectionError,
        requests.Timeout,
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.HTTPError,
        http.client.HTTPException,
        ConnectionError,
        TimeoutError,
    )
    return isinstance(exc, network) or _status(exc) in _TRANSIENT_STATUS


def _translate(exc: Exception, what: str) -> DicomveilError | None:
    """Map one Google SDK exception to ours, or return ``None`` if it is none of theirs."""
    import requests
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth
    from google.cloud.storage import exceptions as media

    if isinstance(exc, api.NotFound):
        return ObjectNotFound(f"{what}: no such object")
    if isinstance(exc, auth.DefaultCredentialsError):
        return ConfigError(f"{what}: no Google application default credentials found")
    if _is_transient(exc):
        return StorageUnavailable(f"{what}: {_status(exc) or type(exc).__name__}")
    if isinstance(exc, api.Forbidden | api.Unauthorized):
        return StorageError(f"{what}: access denied ({_status(exc)})")
    if isinstance(exc, media.DataCorruption):
        return StorageError(f"{what}: checksum mismatch")
    sdk_errors = (api.GoogleAPIError, media.InvalidResponse, auth.GoogleAuthError)
    if isinstance(exc, sdk_errors + (requests.RequestException,)):
        return StorageError(f"{what}: {_status(exc) or type(exc).__name__}")
    return None


def map_gcs_errors(what: str) -> AbstractContextManager[None]:
    """Translate Google SDK exceptions raised in the block into ours, ``from`` them.

    - 404: :class:`~dicomveil.errors.ObjectNotFound`
    - connection failures, timeouts, 408/429/5xx: :class:`~dicomveil.errors.StorageUnavailable`
    - no application default credentials: :class:`~dicomveil.errors.ConfigError`
    - anything else from the SDK: :class:`~dicomveil.errors.StorageError`

    Messages carry ``what`` and the HTTP status, never the server's text.
    """
    return translating(_translate, what)


class _RetryBudget:
    """Retry predicate allowing at most ``retries`` retries of transient failures."""

    def __init__(self, retries: int) -> None:
        self.left = retries

    def __call__(self, exc: Exception) -> bool:
        if not _is_transient(exc) or self.left <= 0:
            return False
        self.left -= 1
        return True


class GcsBlobStore(CloudBlobStore):
    """A :class:`~dicomveil.ports.BlobStore` on a Google Cloud Storage bucket.

    Parameters
    ----------
    bucket, prefix, transfer
        See :class:`~dicomveil.storage._base.CloudBlobStore`. ``part_size`` must be a
        multiple of 256 KiB; ``max_concurrency`` is not used.
    project
        Google Cloud project; default from the credentials.
    endpoint_url
        Another JSON API endpoint, e.g. an emulator; default ``STORAGE_EMULATOR_HOST``.
        With an endpoint and no ``credentials``, requests are anonymous.
    credentials
        A ``google.auth.credentials.Credentials``; default: application default credentials.

    Raises
    ------
    ConfigError
        When the SDK or credentials are missing, or the settings are invalid.
    """

    scheme = "gs"
    bucket_pattern = r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        project: str | None = None,
        endpoint_url: str | None = None,
        credentials: Any = None,
        transfer: Transfer | None = None,
    ) -> None:
        super().__init__(bucket, prefix, transfer=transfer)
        if self.transfer.part_size % _CHUNK_QUANTUM:
            raise ConfigError("option 'part_size' must be a multiple of 256 KiB for gs:// stores")
        storage = require("google.cloud.storage", "gs:// storage", "gcs")
        endpoint = endpoint_url or os.environ.get("STORAGE_EMULATOR_HOST") or None
        with map_gcs_errors(self._what("open")), invalid_settings(self._what("open")):
            if endpoint:
                if "://" not in endpoint:
                    endpoint = f"http://{endpoint}"
                if credentials is None:
                    auth = importlib.import_module("google.auth.credentials")
                    credentials = auth.AnonymousCredentials()
                client = storage.Client(
                    project=project or _EMULATOR_PROJECT,
                    credentials=credentials,
                    client_options={"api_endpoint": endpoint},
                )
            else:
                client = storage.Client(project=project, credentials=credentials)
        self._client: Any = client
        self._bucket: Any = client.bucket(self.bucket)
        self._retry_class: Any = importlib.import_module("google.api_core.retry").Retry

    def close(self) -> None:
        """Close the client's HTTP session."""
        self._client.close()

    def _call_options(self) -> dict[str, Any]:
        """Return a fresh retry policy and the timeout, for one SDK call."""
        retry = self._retry_class(
            predicate=_RetryBudget(self.transfer.retries),
            initial=0.5,
            maximum=8.0,
            multiplier=2.0,
            timeout=_RETRY_DEADLINE,
        )
        return {"retry": retry, "timeout": self.transfer.timeout}

    def _write(
        self, key: str, payload: Payload, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        large = payload.size >= self.transfer.multipart_threshold
        blob = self._bucket.blob(
            self._full(key), chunk_size=self.transfer.part_size if large else None
        )
        blob.metadata = dict(metadata)
        blob.content_type = content_type  # in the object resource too, parameters included
        try:
            with map_gcs_errors(self._what("put", key)), payload.open() as stream:
                blob.upload_from_file(
                    stream, size=payload.size, content_type=content_type, **self._call_options()
                )
        except ObjectNotFound as exc:  # on upload, a 404 can only mean a missing bucket
            raise StorageError(f"{self._what('put', key)}: the bucket does not exist") from exc

    def _read(self, key: str) -> bytes:
        with map_gcs_errors(self._what("get", key)):
            data: bytes = self._bucket.blob(self._full(key)).download_as_bytes(
                **self._call_options()
            )
            return data

    def _read_into(self, key: str, path: Path) -> None:
        with map_gcs_errors(self._what("get", key)):
            self._bucket.blob(self._full(key)).download_to_filename(
                str(path), **self._call_options()
            )

    def _head(self, key: str) -> BlobInfo | None:
        with map_gcs_errors(self._what("head", key)):
            blob = self._bucket.get_blob(self._full(key), **self._call_options())
        return None if blob is None else _info(key, blob)

    def _list(self, prefix: str) -> Iterator[BlobInfo]:
        with map_gcs_errors(self._what("list", prefix)):
            for blob in self._client.list_blobs(
                self._bucket, prefix=self._full(prefix), **self._call_options()
            ):
                key = self._relative(blob.name)
                if key is not None:
                    yield _info(key, blob)

    def _delete(self, key: str) -> None:
        try:
            with map_gcs_errors(self._what("delete", key)):
                self._bucket.delete_blob(self._full(key), **self._call_options())
        except ObjectNotFound:
            pass


def _info(key: str, blob: Any) -> BlobInfo:
    """Build a :class:`BlobInfo` from a loaded ``Blob``."""
    return info_from_metadata(key, int(blob.size), blob.content_type, blob.metadata)
