"""Pre-signed PUT URLs for the incoming store: S3 (SigV4), GCS (V4 signed URLs), Azure (SAS).

A client uploads one object with a plain HTTP ``PUT`` of the URL, sending exactly the headers
given with it; the URL is valid for ``expires`` seconds and only for that one object name
(chosen by us, never by the client). Local stores (``file://``, ``memory://``) cannot sign:
:class:`PresignUnsupported` (the gateway answers 501).

Each signer reads the adapter's own open client, so endpoint and credentials are the store's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dicomveil.errors import ConfigError, DicomveilError

if TYPE_CHECKING:
    from dicomveil.storage import BaseBlobStore

__all__ = ["PresignUnsupported", "SignedPut", "presign_put"]

CONTENT_TYPE = "application/dicom"


class PresignUnsupported(DicomveilError):
    """The incoming store cannot hand out pre-signed URLs (a local store)."""


@dataclass(frozen=True, slots=True)
class SignedPut:
    """One upload URL and the headers the ``PUT`` must carry."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)


def presign_put(store: BaseBlobStore, key: str, expires: int) -> SignedPut:
    """Return a pre-signed ``PUT`` of ``key`` (a store key) valid for ``expires`` seconds.

    Raises
    ------
    PresignUnsupported
        The store is local.
    ConfigError
        The store's credentials cannot sign (GCS without a private key, Azure without an
        account key).
    """
    scheme = getattr(store, "scheme", "")
    signer = _SIGNERS.get(scheme)
    if signer is None:
        raise PresignUnsupported(f"{scheme}:// stores cannot hand out upload URLs")
    full = store._full(key)  # type: ignore[attr-defined]
    return signer(store, full, expires)


def _s3(store: Any, name: str, expires: int) -> SignedPut:
    headers = {"Content-Type": CONTENT_TYPE}
    url = store._client.generate_presigned_url(
        "put_object",
        Params={"Bucket": store.bucket, "Key": name, "ContentType": CONTENT_TYPE},
        ExpiresIn=expires,
        HttpMethod="PUT",
    )
    return SignedPut(str(url), headers)


def _gcs(store: Any, name: str, expires: int) -> SignedPut:
    headers = {"Content-Type": CONTENT_TYPE}
    blob = store._bucket.blob(name)
    credentials = getattr(store._client, "_credentials", None)
    if credentials is None or not hasattr(credentials, "sign_bytes"):
        raise ConfigError(
            f"{store.url}: the GCS credentials cannot sign URLs (use a service account)"
        )
    base = str(getattr(getattr(store._client, "_connection", None), "API_BASE_URL", ""))
    endpoint = base if base and "googleapis.com" not in base else None  # an emulator
    try:
        url = blob.generate_signed_url(
            version="v4",
            expiration=dt.timedelta(seconds=expires),
            method="PUT",
            content_type=CONTENT_TYPE,
            credentials=credentials,
            **({"api_access_endpoint": endpoint} if endpoint else {}),
        )
    except AttributeError as exc:  # anonymous credentials have no signer email
        raise ConfigError(f"{store.url}: the GCS credentials cannot sign URLs") from exc
    return SignedPut(str(url), headers)


def _azure(store: Any, name: str, expires: int) -> SignedPut:
    from azure.storage.blob import BlobSasPermissions, generate_blob_sas

    service = store._service
    credential = getattr(service, "credential", None)
    account_key = getattr(credential, "account_key", None)
    if not account_key:
        raise ConfigError(f"{store.url}: Azure SAS URLs need the account key")
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    sas = generate_blob_sas(
        account_name=service.account_name,
        container_name=store.bucket,
        blob_name=name,
        account_key=account_key,
        permission=BlobSasPermissions(create=True, write=True),
        expiry=start + dt.timedelta(seconds=expires + 60),
        start=start,
    )
    blob = store._container.get_blob_client(name)
    headers = {"x-ms-blob-type": "BlockBlob", "Content-Type": CONTENT_TYPE}
    return SignedPut(f"{blob.url}?{sas}", headers)


_SIGNERS = {"s3": _s3, "gs": _gcs, "az": _azure}
