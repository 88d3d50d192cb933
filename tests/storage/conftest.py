"""Fixtures for the storage tests: every backend, the cloud ones on emulators on loopback.

The emulators themselves (``s3_endpoint``, ``azurite``, ``gcs_endpoint``) are session fixtures
in ``tests/conftest.py``, shared with the other test packages. Each test gets a fresh key
prefix in the shared bucket or container. On a developer's machine a missing SDK or emulator
skips the cloud tests; under ``CI=true`` it fails them (see :mod:`tests.support.servers`).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dicomveil.ports import BlobInfo, BlobStore
from dicomveil.storage import FileBlobStore, MemoryBlobStore, open_store
from tests.support.cloud import (  # noqa: F401 - re-exported for the storage tests
    AWS_OPTIONS,
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    BUCKET,
    azurite_connection_string,
    require_module,
)

BIG_SIZE = 20 * 1024 * 1024


@dataclass
class Backend:
    """One store under test, plus a way to ask the backend how an upload was split."""

    name: str
    store: BlobStore
    #: Number of parts (S3 parts, Azure blocks, GCS chunks) the upload of a key used.
    parts: Callable[[str], int]
    #: Whether :meth:`head` reports content type, metadata and sha256 (a file store without
    #: sidecars knows only the size).
    keeps_metadata: bool = True

    def described(self, info: BlobInfo) -> BlobInfo:
        """What :meth:`head` reports of the object put as ``info`` (put's own answer, less
        what this backend does not keep)."""
        if self.keeps_metadata:
            return info
        return BlobInfo(key=info.key, size=info.size)


def _s3_parts(store: Any) -> Callable[[str], int]:
    def parts(key: str) -> int:
        etag = str(store._client.head_object(Bucket=store.bucket, Key=store.prefix + key)["ETag"])
        return int(etag.strip('"').partition("-")[2] or 1)

    return parts


def _azure_parts(store: Any) -> Callable[[str], int]:
    def parts(key: str) -> int:
        blob = store._container.get_blob_client(store.prefix + key)
        committed, _ = blob.get_block_list("committed")
        return max(1, len(committed))

    return parts


def _gcs_parts(store: Any) -> Callable[[str], int]:
    chunks: list[str] = []

    def record(response: Any, *args: Any, **kwargs: Any) -> None:
        request = response.request
        if request.method == "PUT" and "upload_id=" in request.url:
            chunks.append(request.url)

    store._client._http.hooks["response"].append(record)
    return lambda key: max(1, len(chunks))


BACKENDS = [
    "memory",
    "file",
    "file-nosidecars",
    pytest.param("s3", marks=pytest.mark.cloud),
    pytest.param("azure", marks=pytest.mark.cloud),
    pytest.param("gcs", marks=pytest.mark.cloud),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each backend in turn, with a fresh prefix (or a fresh local store)."""
    name: str = request.param
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    store: Any
    if name == "memory":
        store = MemoryBlobStore(prefix)
        parts: Callable[[str], int] = lambda key: 1  # noqa: E731
    elif name in ("file", "file-nosidecars"):
        store = FileBlobStore(tmp_path / "store", sidecars=name == "file")
        parts = lambda key: 1  # noqa: E731
    elif name == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        store = open_store(f"s3://{BUCKET}/{prefix}", endpoint_url=endpoint, **AWS_OPTIONS)
        parts = _s3_parts(store)
    elif name == "azure":
        connection_string = request.getfixturevalue("azurite")
        store = open_store(f"az://{BUCKET}/{prefix}", connection_string=connection_string)
        parts = _azure_parts(store)
    else:
        endpoint = request.getfixturevalue("gcs_endpoint")
        store = open_store(f"gs://{BUCKET}/{prefix}", endpoint_url=endpoint)
        parts = _gcs_parts(store)
    try:
        yield Backend(name, store, parts, keeps_metadata=name != "file-nosidecars")
    finally:
        store.close()


@pytest.fixture(scope="session")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 20 MiB file of random bytes (big enough for multipart uploads) and its SHA-256."""
    path = tmp_path_factory.mktemp("big") / "big.bin"
    data = os.urandom(BIG_SIZE)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()
