"""Amazon S3 (and S3-compatible) blob store: ``s3://bucket/prefix``, through boto3.

Needs ``pip install 'dicomveil[s3]'``; boto3 is imported when a store is created, never when
this module is imported.

- **Endpoint**: AWS by default; the standard ``AWS_ENDPOINT_URL`` (or
  ``AWS_ENDPOINT_URL_S3``) environment variable, or the ``endpoint_url`` option, points it at
  MinIO, moto, Ceph and the like.
- **Credentials**: the usual AWS chain (environment, shared config and ``profile_name``,
  container or instance roles), or explicit ``aws_access_key_id``/``aws_secret_access_key``
  options.
- **Uploads** go through boto3's transfer manager: multipart above
  ``multipart_threshold``, with ``max_concurrency`` parts in flight. Every request carries an
  S3 SHA-256 checksum the server verifies (``native_checksum``; turn it off for stores that
  do not support it). The object's SHA-256 is also stored as the ``sha256`` metadata entry and
  checked on ``head`` after the upload, together with the size and, for single-part objects,
  the server's own full-object SHA-256.
"""

from __future__ import annotations

import base64
import binascii
import importlib
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import replace
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
from dicomveil.storage._values import MiB, Payload, Transfer, info_from_metadata

__all__ = ["S3BlobStore", "map_s3_errors"]

_NOT_FOUND = frozenset({"NoSuchKey", "NotFound", "404"})
_TRANSIENT = frozenset(
    {
        "InternalError",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
    }
)


def _translate(exc: Exception, what: str) -> DicomveilError | None:
    """Map one boto3/botocore exception to ours, or return ``None`` if it is none of theirs."""
    import urllib3.exceptions
    from boto3.exceptions import Boto3Error, S3UploadFailedError
    from botocore import exceptions as sdk

    if isinstance(exc, S3UploadFailedError):
        inner = exc.__context__
        mapped = _translate(inner, what) if isinstance(inner, Exception) else None
        return mapped or StorageError(f"{what}: upload failed")
    if isinstance(exc, sdk.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in _NOT_FOUND:
            return ObjectNotFound(f"{what}: no such object")
        if code == "NoSuchBucket":
            return StorageError(f"{what}: the bucket does not exist")
        if code in _TRANSIENT or status >= 500 or status == 429:
            return StorageUnavailable(f"{what}: {code or status}")
        if status in (401, 403):
            return StorageError(f"{what}: access denied ({code or status})")
        return StorageError(f"{what}: {code or status}")
    missing_settings = (
        sdk.NoCredentialsError,
        sdk.PartialCredentialsError,
        sdk.ProfileNotFound,
        sdk.NoRegionError,
        sdk.InvalidConfigError,
        sdk.InvalidRegionError,
    )
    if isinstance(exc, missing_settings):
        return ConfigError(f"{what}: {type(exc).__name__} (check the AWS credentials and config)")
    if isinstance(exc, sdk.ConnectionError | sdk.HTTPClientError | urllib3.exceptions.HTTPError):
        return StorageUnavailable(f"{what}: {type(exc).__name__}")
    if isinstance(exc, sdk.BotoCoreError | Boto3Error):
        return StorageError(f"{what}: {type(exc).__name__}")
    return None


def map_s3_errors(what: str) -> AbstractContextManager[None]:
    """Translate boto3/botocore exceptions raised in the block into ours, ``from`` them.

    - missing key: :class:`~dicomveil.errors.ObjectNotFound`
    - unreachable endpoint, timeout, throttling, 5xx: :class:`~dicomveil.errors.StorageUnavailable`
    - no credentials, unknown profile: :class:`~dicomveil.errors.ConfigError`
    - anything else from the SDK (access denied, missing bucket):
      :class:`~dicomveil.errors.StorageError`

    Messages carry ``what`` and the S3 error code, never the server's text.
    """
    return translating(_translate, what)


class S3BlobStore(CloudBlobStore):
    """A :class:`~dicomveil.ports.BlobStore` on an S3 bucket.

    Parameters
    ----------
    bucket, prefix, transfer
        See :class:`~dicomveil.storage._base.CloudBlobStore`.
    endpoint_url
        S3-compatible endpoint (``http://127.0.0.1:9000``); ``None`` uses
        ``AWS_ENDPOINT_URL`` or AWS itself.
    region_name, profile_name
        AWS region and shared-config profile; ``None`` follows the usual AWS resolution.
    aws_access_key_id, aws_secret_access_key, aws_session_token
        Explicit credentials, instead of the default chain.
    addressing_style
        ``"auto"``, ``"path"`` or ``"virtual"`` bucket addressing.
    native_checksum
        Ask S3 to verify a SHA-256 checksum on every upload request and report it on head.

    Raises
    ------
    ConfigError
        When boto3 is missing, or the profile or settings are invalid.
    """

    scheme = "s3"
    bucket_pattern = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        profile_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        addressing_style: str = "auto",
        native_checksum: bool = True,
        transfer: Transfer | None = None,
    ) -> None:
        super().__init__(bucket, prefix, transfer=transfer)
        if addressing_style not in ("auto", "path", "virtual"):
            raise ConfigError("option 'addressing_style' must be 'auto', 'path' or 'virtual'")
        boto3 = require("boto3", "s3:// storage", "s3")
        botocore_config = importlib.import_module("botocore.config")
        transfer_module = importlib.import_module("boto3.s3.transfer")
        tuning = self.transfer
        with map_s3_errors(self._what("open")), invalid_settings(self._what("open")):
            session = boto3.session.Session(
                aws_access_key_id=aws_access_key_id,
                aws_secret_access_key=aws_secret_access_key,
                aws_session_token=aws_session_token,
                region_name=region_name,
                profile_name=profile_name,
            )
            config = botocore_config.Config(
                connect_timeout=tuning.timeout,
                read_timeout=tuning.timeout,
                retries={"total_max_attempts": tuning.retries + 1, "mode": "standard"},
                s3={"addressing_style": addressing_style},
                max_pool_connections=max(10, tuning.max_concurrency),
            )
            self._client: Any = session.client("s3", endpoint_url=endpoint_url, config=config)
        self._transfer_config = transfer_module.TransferConfig(
            multipart_threshold=tuning.multipart_threshold,
            multipart_chunksize=tuning.part_size,
            max_concurrency=tuning.max_concurrency,
            use_threads=tuning.max_concurrency > 1,
        )
        self._native_checksum = native_checksum

    def close(self) -> None:
        """Close the client's connection pool."""
        self._client.close()

    def _write(
        self, key: str, payload: Payload, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        extra: dict[str, Any] = {"ContentType": content_type, "Metadata": dict(metadata)}
        if self._native_checksum:
            extra["ChecksumAlgorithm"] = "SHA256"
        with map_s3_errors(self._what("put", key)), payload.open() as stream:
            self._client.upload_fileobj(
                stream, self.bucket, self._full(key), ExtraArgs=extra, Config=self._transfer_config
            )

    def _read(self, key: str) -> bytes:
        with map_s3_errors(self._what("get", key)):
            response = self._client.get_object(Bucket=self.bucket, Key=self._full(key))
            data: bytes = response["Body"].read()
            return data

    def _read_into(self, key: str, path: Path) -> None:
        with map_s3_errors(self._what("get", key)), open(path, "wb") as handle:
            response = self._client.get_object(Bucket=self.bucket, Key=self._full(key))
            for chunk in response["Body"].iter_chunks(MiB):
                handle.write(chunk)

    def _head(self, key: str) -> BlobInfo | None:
        options = {"ChecksumMode": "ENABLED"} if self._native_checksum else {}
        try:
            with map_s3_errors(self._what("head", key)):
                response = self._client.head_object(
                    Bucket=self.bucket, Key=self._full(key), **options
                )
        except ObjectNotFound:
            return None
        info = info_from_metadata(
            key, int(response["ContentLength"]), response.get("ContentType"), response["Metadata"]
        )
        native = _full_object_sha256(response)
        return replace(info, sha256=native) if native and native != info.sha256 else info

    def _list(self, prefix: str) -> Iterator[BlobInfo]:
        with map_s3_errors(self._what("list", prefix)):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._full(prefix)
            )
            for page in pages:
                for item in page.get("Contents", []):
                    key = self._relative(item["Key"])
                    if key is not None:
                        yield BlobInfo(key=key, size=int(item["Size"]))

    def _delete(self, key: str) -> None:
        with map_s3_errors(self._what("delete", key)):
            self._client.delete_object(Bucket=self.bucket, Key=self._full(key))


def _full_object_sha256(response: Mapping[str, Any]) -> str | None:
    """Return S3's own SHA-256 of the whole object (hex), when the head reported one.

    Multipart objects carry a checksum of the part checksums instead (``COMPOSITE``, or a
    ``-N`` suffix or a multipart ETag on servers that do not say), which is not comparable.
    """
    value = response.get("ChecksumSHA256")
    etag = str(response.get("ETag", ""))
    default_type = "COMPOSITE" if "-" in etag else "FULL_OBJECT"
    if not value or "-" in value or response.get("ChecksumType", default_type) != "FULL_OBJECT":
        return None
    try:
        return base64.b64decode(value, validate=True).hex()
    except binascii.Error:
        return None
