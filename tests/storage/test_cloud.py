"""What is particular to each cloud adapter, checked against its emulator where needed."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

import pytest

from dicomveil.errors import StorageError
from dicomveil.storage import open_store
from tests.storage.conftest import AWS_OPTIONS, BUCKET

DICOM = "application/dicom"


def fresh_prefix() -> str:
    return f"c-{uuid.uuid4().hex[:12]}"


@pytest.mark.cloud
class TestS3:
    def test_endpoint_from_the_standard_environment_variable(
        self, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
        with open_store(f"s3://{BUCKET}/{fresh_prefix()}", **AWS_OPTIONS) as store:
            store.put_bytes("k", b"via env", content_type=DICOM)
            assert store.get_bytes("k") == b"via env"

    def test_without_native_checksum(self, s3_endpoint: str) -> None:
        url = f"s3://{BUCKET}/{fresh_prefix()}"
        options = {"endpoint_url": s3_endpoint, "native_checksum": False, **AWS_OPTIONS}
        with open_store(url, **options) as store:
            info = store.put_bytes("k", b"abc", content_type=DICOM)
            assert info.sha256 == hashlib.sha256(b"abc").hexdigest()

    def test_head_prefers_the_servers_own_digest(self, s3_endpoint: str) -> None:
        prefix = fresh_prefix()
        with open_store(
            f"s3://{BUCKET}/{prefix}", endpoint_url=s3_endpoint, **AWS_OPTIONS
        ) as store:
            client: Any = store._client  # type: ignore[attr-defined]
            client.put_object(
                Bucket=BUCKET,
                Key=f"{prefix}/k",
                Body=b"real content",
                ChecksumAlgorithm="SHA256",
                Metadata={"sha256": "0" * 64},
            )
            info = store.head("k")
            assert info is not None
            assert info.sha256 == hashlib.sha256(b"real content").hexdigest()

    def test_foreign_names_are_not_listed(self, s3_endpoint: str) -> None:
        prefix = fresh_prefix()
        with open_store(
            f"s3://{BUCKET}/{prefix}", endpoint_url=s3_endpoint, **AWS_OPTIONS
        ) as store:
            client: Any = store._client  # type: ignore[attr-defined]
            client.put_object(Bucket=BUCKET, Key=f"{prefix}/folder/", Body=b"")
            client.put_object(Bucket=BUCKET, Key=f"{prefix}/a//b", Body=b"")
            store.put_bytes("folder/real", b"x", content_type=DICOM)
            assert [item.key for item in store.list()] == ["folder/real"]

    def test_missing_bucket(self, s3_endpoint: str) -> None:
        with open_store("s3://no-such-bucket", endpoint_url=s3_endpoint, **AWS_OPTIONS) as store:
            with pytest.raises(StorageError, match="bucket does not exist"):
                store.put_bytes("k", b"x", content_type=DICOM)
            assert store.head("k") is None


@pytest.mark.cloud
class TestAzure:
    def test_missing_container(self, azurite: str) -> None:
        with open_store("az://no-such-container", connection_string=azurite) as store:
            with pytest.raises(StorageError, match="container does not exist"):
                store.put_bytes("k", b"x", content_type=DICOM)
            with pytest.raises(StorageError, match="container does not exist"):
                store.get_bytes("k")

    def test_small_upload_is_a_single_put(self, azurite: str) -> None:
        prefix = fresh_prefix()
        with open_store(f"az://{BUCKET}/{prefix}", connection_string=azurite) as store:
            store.put_bytes("k", b"x" * 1000, content_type=DICOM)
            blob: Any = store._container.get_blob_client(f"{prefix}/k")  # type: ignore[attr-defined]
            assert blob.get_block_list("committed")[0] == []


@pytest.mark.cloud
class TestGcs:
    def test_emulator_from_the_environment(
        self, gcs_endpoint: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
        with open_store(f"gs://{BUCKET}/{fresh_prefix()}") as store:
            store.put_bytes("k", b"via env", content_type=DICOM, metadata={"a": "b"})
            info = store.head("k")
            assert info is not None
            assert dict(info.metadata) == {"a": "b"}

    def test_missing_bucket(self, gcs_endpoint: str) -> None:
        with open_store("gs://no-such-bucket", endpoint_url=gcs_endpoint) as store:
            with pytest.raises(StorageError, match="bucket does not exist"):
                store.put_bytes("k", b"x", content_type=DICOM)
            assert store.head("k") is None


class TestNativeDigest:
    @pytest.mark.parametrize(
        ("response", "expected"),
        [
            ({"ChecksumSHA256": "", "ETag": '"abc"'}, None),
            ({"ETag": '"abc"'}, None),
            ({"ChecksumSHA256": "DIGEST", "ETag": '"abc"'}, "HEX"),
            ({"ChecksumSHA256": "DIGEST", "ChecksumType": "FULL_OBJECT", "ETag": '"a-2"'}, "HEX"),
            ({"ChecksumSHA256": "DIGEST", "ChecksumType": "COMPOSITE", "ETag": '"a"'}, None),
            ({"ChecksumSHA256": "DIGEST", "ETag": '"abc-3"'}, None),
            ({"ChecksumSHA256": "DIGEST-3", "ETag": '"abc"'}, None),
            ({"ChecksumSHA256": "not base64!", "ETag": '"abc"'}, None),
        ],
    )
    def test_full_object_sha256(self, response: dict[str, str], expected: str | None) -> None:
        from dicomveil.storage.s3 import _full_object_sha256  # pure: needs no SDK

        digest = hashlib.sha256(b"x").digest()
        encoded = base64.b64encode(digest).decode()
        response = {k: v.replace("DIGEST", encoded) for k, v in response.items()}
        wanted = digest.hex() if expected == "HEX" else None
        assert _full_object_sha256(response) == wanted
