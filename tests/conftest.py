"""Session fixtures shared by every test package: the cloud storage emulators, PostgreSQL.

Each emulator is started once per session on a free port, only when a test asks for it, and
stopped in ``finally``: ``s3_endpoint`` (in-process moto server), ``azurite`` (Azure Blob,
npm) and ``gcs_endpoint`` (gcp-storage-emulator), each with the bucket or container
:data:`tests.support.cloud.BUCKET`. On a developer's machine a missing SDK or emulator skips
the tests that need it; under ``CI=true`` it fails them (see :mod:`tests.support.servers`).

``postgres_url`` is a PostgreSQL server (initdb + pg_ctl on a free port, fsync off), started
the same way; as root it runs as the ``postgres`` user through ``runuser``. Each test makes
its own database in it with :func:`create_postgres_database`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cloud import (
    AWS_OPTIONS,
    BUCKET,
    REPO,
    azurite_connection_string,
    require_module,
)
from tests.support.servers import (
    free_port,
    require,
    require_binary,
    start,
    stop,
    wait_http,
    wait_tcp,
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


PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server on loopback for the session; yields its base URL."""
    initdb = require_binary("initdb", str(PG_BIN / "initdb"))
    pg_ctl = require_binary("pg_ctl", str(PG_BIN / "pg_ctl"))
    require("psycopg (Python package)", importlib.util.find_spec("psycopg"))
    root = Path(tempfile.mkdtemp(prefix="dicomveil-pg-"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    started = False
    try:
        init = [initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]
        subprocess.run(_as_postgres(init), check=True, capture_output=True)
        options = (
            f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off"
        )
        run = [pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-o", options, "start"]
        subprocess.run(_as_postgres(run), check=True, capture_output=True)
        started = True
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        if started:
            subprocess.run(
                _as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
                check=False,
                capture_output=True,
            )
        shutil.rmtree(root, ignore_errors=True)


def create_postgres_database(base: str, prefix: str = "test") -> str:
    """Create an empty database on the server at ``base`` and return its URL."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(
        base.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base}/{name}"
