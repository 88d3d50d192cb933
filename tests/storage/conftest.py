"""Fixtures for the storage tests: every backend, the cloud ones on emulators on loopback.

Each emulator is started once per session on a free port, only when a test asks for it, and
stopped in ``finally``. Each test gets a fresh key prefix in the shared bucket or container.
On a developer's machine a missing SDK or emulator skips the cloud tests; under ``CI=true`` it
fails them (see :mod:`tests.support.servers`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dicomveil.ports import BlobStore
from dicomveil.storage import FileBlobStore, MemoryBlobStore, open_store
from tests.support.servers import (
    free_port,
    require,
    require_binary,
    start,
    stop,
    wait_http,
    wait_tcp,
)

REPO = Path(__file__).resolve().parents[2]
BUCKET = "dicomveil-test"
BIG_SIZE = 20 * 1024 * 1024
AWS_OPTIONS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "region_name": "us-east-1",
}
# The Azurite emulator's well-known development account key (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def require_module(name: str, install: str) -> None:
    """Skip (or fail under CI) when the Python package providing ``name`` is missing."""
    require(f"{install} (Python package)", importlib.util.find_spec(name.partition(".")[0]))
    require(f"{install} (Python package)", importlib.util.find_spec(name))


def azurite_connection_string(port: int) -> str:
    """Return the connection string of an Azurite listening on ``port``."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    )


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An in-process moto S3 server with the test bucket; yields its endpoint URL."""
    require_module("boto3", "boto3")
    require_module("moto.server", "moto[server]")
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        wait_http(endpoint + "/", timeout=15)
        client = boto3.client("s3", endpoint_url=endpoint, **AWS_OPTIONS)
        client.create_bucket(Bucket=BUCKET)
        client.close()
        yield endpoint
    finally:
        server.stop()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An Azurite blob service with the test container; yields its connection string."""
    require_module("azure.storage.blob", "azure-storage-blob")
    prefixes = [os.environ.get("NPM_PREFIX", ""), str(REPO / ".ci" / "node")]
    binary = require_binary(
        "azurite-blob",
        *(str(Path(p) / "node_modules" / ".bin" / "azurite-blob") for p in prefixes if p),
    )
    from azure.storage.blob import BlobServiceClient

    workdir = tmp_path_factory.mktemp("azurite")
    port = free_port()
    command = [
        binary,
        "--blobHost", "127.0.0.1",
        "--blobPort", str(port),
        "--inMemoryPersistence",
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--loose",
        "--silent",
    ]  # fmt: skip
    proc = start(command, workdir / "azurite.log")
    try:
        wait_tcp(port, timeout=30, proc=proc)
        connection_string = azurite_connection_string(port)
        with BlobServiceClient.from_connection_string(connection_string) as service:
            service.create_container(BUCKET)
        yield connection_string
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def gcs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gcp-storage-emulator with the test bucket; yields its endpoint URL."""
    require_module("google.cloud.storage", "google-cloud-storage")
    binary = require_binary(
        "gcp-storage-emulator", str(Path(sys.executable).parent / "gcp-storage-emulator")
    )
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    workdir = tmp_path_factory.mktemp("gcs")
    port = free_port()
    command = [binary, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"]
    proc = start(command, workdir / "gcs.log", env={"PYTHONWARNINGS": "ignore"})
    try:
        endpoint = f"http://127.0.0.1:{port}"
        wait_http(endpoint + "/", timeout=15, proc=proc)
        client = storage.Client(
            project="test",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": endpoint},
        )
        client.create_bucket(BUCKET)
        client.close()
        yield endpoint
    finally:
        stop(proc)


@dataclass
class Backend:
    """One store under test, plus a way to ask the backend how an upload was split."""

    name: str
    store: BlobStore
    #: Number of parts (S3 parts, Azure blocks, GCS chunks) the upload of a key used.
    parts: Callable[[str], int]


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
    elif name == "file":
        store = FileBlobStore(tmp_path / "store")
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
        yield Backend(name, store, parts)
    finally:
        store.close()


@pytest.fixture(scope="session")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 20 MiB file of random bytes (big enough for multipart uploads) and its SHA-256."""
    path = tmp_path_factory.mktemp("big") / "big.bin"
    data = os.urandom(BIG_SIZE)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()
