"""Azure Blob Storage blob store: ``az://container/prefix``, through azure-storage-blob.

Needs ``pip install 'dicomveil[azure]'``; the SDK is imported when a store is created, never
when this module is imported.

Which account and credentials, first match wins:

1. the ``connection_string`` option;
2. the ``account_url`` option (``https://acct.blob.core.windows.net``, or an emulator's
   ``http://127.0.0.1:10000/devstoreaccount1``) or ``account_name``, with the ``credential``
   option (an account key, a SAS token, or any azure-identity credential object), or else
   :class:`azure.identity.DefaultAzureCredential` (environment, managed identity, Azure CLI...);
3. the ``AZURE_STORAGE_CONNECTION_STRING`` environment variable.

Uploads above ``multipart_threshold`` are staged as blocks of ``part_size`` bytes,
``max_concurrency`` at a time, each request MD5-checked by the service
(``validate_content``). The content's SHA-256 is stored as the ``sha256`` metadata entry and
checked, with the size, after the upload.
"""

from __future__ import annotations

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

__all__ = ["AzureBlobStore", "map_azure_errors"]

_FEATURE = "az:// storage"
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_CONTAINER_MISSING = frozenset({"ContainerNotFound", "ContainerBeingDeleted"})


def _translate(exc: Exception, what: str) -> DicomveilError | None:
    """Map one azure-core exception to ours, or return ``None`` if it is none of theirs."""
    from azure.core import exceptions as sdk

    code = getattr(exc, "error_code", None)  # set by azure-storage on service errors
    if isinstance(exc, sdk.ResourceNotFoundError):
        if code in _CONTAINER_MISSING:
            return StorageError(f"{what}: the container does not exist")
        return ObjectNotFound(f"{what}: no such object")
    if isinstance(exc, sdk.ClientAuthenticationError):
        if exc.response is None:  # no token could be obtained: nothing reached the service
            return ConfigError(f"{what}: no usable Azure credential ({type(exc).__name__})")
        return StorageError(f"{what}: access denied ({code or exc.status_code})")
    if isinstance(exc, sdk.ServiceRequestError | sdk.ServiceResponseError):
        return StorageUnavailable(f"{what}: {type(exc).__name__}")
    if isinstance(exc, sdk.HttpResponseError):
        status = exc.status_code or 0
        detail = code or status
        if status in _TRANSIENT_STATUS or status >= 500:
            return StorageUnavailable(f"{what}: {detail}")
        return StorageError(f"{what}: {detail}")
    if isinstance(exc, sdk.AzureError):
        return StorageError(f"{what}: {type(exc).__name__}")
    return None


def map_azure_errors(what: str) -> AbstractContextManager[None]:
    """Translate azure-core exceptions raised in the block into ours, ``from`` them.

    - missing blob: :class:`~dicomveil.errors.ObjectNotFound`
    - connection failures, timeouts, 408/429/5xx: :class:`~dicomveil.errors.StorageUnavailable`
    - no credential available: :class:`~dicomveil.errors.ConfigError`
    - anything else (missing container, access denied): :class:`~dicomveil.errors.StorageError`

    Messages carry ``what`` and the service's error code, never its text.
    """
    return translating(_translate, what)


class AzureBlobStore(CloudBlobStore):
    """A :class:`~dicomveil.ports.BlobStore` on an Azure Blob Storage container.

    Parameters
    ----------
    bucket, prefix, transfer
        The container, key prefix and tuning (see
        :class:`~dicomveil.storage._base.CloudBlobStore`).
    connection_string
        A storage connection string (it holds the key: keep it out of logs).
    account_url
        The blob service URL; may carry a SAS token as its query.
    account_name
        Shorthand for ``account_url=https://<name>.blob.core.windows.net``.
    credential
        Account key, SAS token, ``{"account_name": ..., "account_key": ...}``, or a token
        credential; with ``account_url``/``account_name`` only. Default: azure-identity's
        ``DefaultAzureCredential``.

    Raises
    ------
    ConfigError
        When the SDK is missing, no account is configured, or the settings are invalid.
    """

    scheme = "az"
    bucket_pattern = r"(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]|\$root"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        connection_string: str | None = None,
        account_url: str | None = None,
        account_name: str | None = None,
        credential: Any = None,
        transfer: Transfer | None = None,
    ) -> None:
        super().__init__(bucket, prefix, transfer=transfer)
        blob = require("azure.storage.blob", _FEATURE, "azure")
        tuning = self.transfer
        options: dict[str, Any] = {
            # waits about 2, 4, 8, 16... seconds (+-1) between attempts
            "retry_policy": blob.ExponentialRetry(
                initial_backoff=0,
                increment_base=2,
                retry_total=tuning.retries,
                random_jitter_range=1,
            ),
            "connection_timeout": tuning.timeout,
            "read_timeout": tuning.timeout,
            "max_single_put_size": tuning.multipart_threshold,
            "max_block_size": tuning.part_size,
            "max_single_get_size": tuning.multipart_threshold,
            "max_chunk_get_size": tuning.part_size,
        }
        if account_name and not account_url:
            account_url = f"https://{account_name}.blob.core.windows.net"
        connection_string = connection_string or (
            None if account_url else os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
        )
        with map_azure_errors(self._what("open")), invalid_settings(self._what("open")):
            if connection_string:
                service = blob.BlobServiceClient.from_connection_string(
                    connection_string, credential=credential, **options
                )
            elif account_url:
                if credential is None:
                    identity = require("azure.identity", _FEATURE, "azure")
                    credential = identity.DefaultAzureCredential()
                service = blob.BlobServiceClient(account_url, credential=credential, **options)
            else:
                raise ConfigError(
                    f"{self.url}: no Azure account configured: pass connection_string, "
                    "account_url or account_name, or set AZURE_STORAGE_CONNECTION_STRING"
                )
        self._service: Any = service
        self._container: Any = service.get_container_client(self.bucket)
        self._content_settings: Any = blob.ContentSettings

    def close(self) -> None:
        """Close the client's connection pool."""
        self._service.close()

    def _write(
        self, key: str, payload: Payload, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        with map_azure_errors(self._what("put", key)), payload.open() as stream:
            self._container.upload_blob(
                self._full(key),
                stream,
                length=payload.size,
                overwrite=True,
                content_settings=self._content_settings(content_type=content_type),
                metadata=dict(metadata),
                max_concurrency=self.transfer.max_concurrency,
                validate_content=True,
            )

    def _read(self, key: str) -> bytes:
        with map_azure_errors(self._what("get", key)):
            downloader = self._container.download_blob(
                self._full(key), max_concurrency=self.transfer.max_concurrency
            )
            data: bytes = downloader.readall()
            return data

    def _read_into(self, key: str, path: Path) -> None:
        with map_azure_errors(self._what("get", key)), open(path, "wb") as handle:
            downloader = self._container.download_blob(self._full(key))
            for chunk in downloader.chunks():  # one part at a time (max_chunk_get_size)
                handle.write(chunk)

    def _head(self, key: str) -> BlobInfo | None:
        try:
            with map_azure_errors(self._what("head", key)):
                properties = self._container.get_blob_client(self._full(key)).get_blob_properties()
        except ObjectNotFound:
            return None
        return self._info(key, properties)

    def _list(self, prefix: str) -> Iterator[BlobInfo]:
        with map_azure_errors(self._what("list", prefix)):
            for item in self._container.list_blobs(
                name_starts_with=self._full(prefix), include=["metadata"]
            ):
                key = self._relative(item.name)
                if key is not None:
                    yield self._info(key, item)

    def _delete(self, key: str) -> None:
        try:
            with map_azure_errors(self._what("delete", key)):
                self._container.delete_blob(self._full(key))
        except ObjectNotFound:
            pass

    @staticmethod
    def _info(key: str, properties: Any) -> BlobInfo:
        """Build a :class:`BlobInfo` from ``BlobProperties``."""
        content_type = (
            properties.content_settings.content_type if properties.content_settings else None
        )
        metadata = {name: value for name, value in (properties.metadata or {}).items() if value}
        return info_from_metadata(key, int(properties.size), content_type, metadata)
