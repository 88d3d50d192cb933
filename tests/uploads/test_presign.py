"""Signing PUT URLs per backend, below the HTTP layer.

GCS: the emulator does not check signatures, so the test signs with a throw-away service
account key (generated here), checks the V4 query parameters, rebuilds the V4
string-to-sign from the URL as Google does and verifies the RSA signature with the key's
public half; then uploads with plain ``requests`` through the URL to the emulator.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests

from dicomveil.storage import open_store
from dicomveil.uploads.presign import PresignUnsupported, presign_put
from tests.support.cloud import BUCKET, require_module


def _service_account() -> tuple[object, object]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.oauth2 import service_account

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "test",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "uploader@test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "http://127.0.0.1:9/token",  # never called: signing is local
    }
    return service_account.Credentials.from_service_account_info(info), key.public_key()  # type: ignore[no-untyped-call]


def test_local_stores_cannot_sign(tmp_path: Path) -> None:
    for store in (open_store(f"file://{tmp_path}"), open_store("memory://presign")):
        with pytest.raises(PresignUnsupported):
            presign_put(store, "incoming/x/00001.dcm", 60)


@pytest.mark.cloud
def test_gcs_v4_signed_put(gcs_endpoint: str) -> None:
    require_module("cryptography", "cryptography")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    credentials, public = _service_account()
    prefix = f"ps-{uuid.uuid4().hex[:8]}"
    store = open_store(
        f"gs://{BUCKET}/{prefix}", endpoint_url=gcs_endpoint, credentials=credentials
    )
    try:
        signed = presign_put(store, "incoming/u1/00001.dcm", 900)
    finally:
        store.close()
    parts = urlsplit(signed.url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert signed.url.startswith(gcs_endpoint)
    assert parts.path == f"/{BUCKET}/{prefix}/incoming/u1/00001.dcm"
    assert query["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert query["X-Goog-Expires"] == "900"
    assert query["X-Goog-Credential"].startswith("uploader@test.iam.gserviceaccount.com/")
    assert query["X-Goog-SignedHeaders"] == "content-type;host"
    # the V4 string-to-sign, rebuilt from the URL, verifies with the public key
    canonical_query = "&".join(
        f"{quote(k, safe='')}={quote(v, safe='')}"
        for k, v in sorted(query.items())
        if k != "X-Goog-Signature"
    )
    canonical = "\n".join(
        [
            "PUT",
            parts.path,
            canonical_query,
            f"content-type:{signed.headers['Content-Type']}\nhost:{parts.netloc}\n",
            "content-type;host",
            "UNSIGNED-PAYLOAD",
        ]
    )
    scope = query["X-Goog-Credential"].split("/", 1)[1]
    to_sign = "\n".join(
        [
            "GOOG4-RSA-SHA256",
            query["X-Goog-Date"],
            scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    public.verify(  # type: ignore[attr-defined]
        bytes.fromhex(query["X-Goog-Signature"]),
        to_sign.encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    answer = requests.put(signed.url, data=b"DICM-bytes", headers=signed.headers, timeout=30)
    assert answer.status_code == 200, answer.text
    reader = open_store(f"gs://{BUCKET}/{prefix}", endpoint_url=gcs_endpoint)
    try:
        assert reader.get_bytes("incoming/u1/00001.dcm") == b"DICM-bytes"
    finally:
        reader.close()
