"""Helpers for the batch tests: the CLI, destinations on real emulators, reading batches back.

Objects are read back through each cloud's own SDK (not through dicomveil's adapters), so the
tests see what a reading service would see.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dicomveil.demo import demo_patients
from tests.support.cloud import AWS_OPTIONS, BUCKET

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("batch_cli.py")
PATIENTS = 3
KEY = "batch-test-pseudonym-key-0123456789\n"


def cli_main(argv: list[str]) -> int:
    """Run ``dicomveil ARGV`` in this process (registering ``batch`` if main.py does not yet)."""
    from dicomveil.cli import batch
    from dicomveil.cli import main as entry

    if not any(group.name == "batch" for group in entry.app.registered_groups):
        batch.register(entry.app)
    return entry.main(argv)


def run_cli(
    argv: list[str], env: Mapping[str, str], *, crash_at: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``dicomveil ARGV`` in a subprocess (own session), optionally crashing at a point."""
    full_env = {**os.environ, **env, "PYTHONPATH": str(REPO), "BATCH_CRASH_AT": crash_at}
    return subprocess.run(
        [sys.executable, str(RUNNER), *argv],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
        check=False,
    )


def phi_needles(count: int = PATIENTS) -> list[bytes]:
    """The identifying values the demo study plants (names, ids, birth dates, phones)."""
    needles: list[bytes] = []
    for patient in demo_patients(count):
        family, given = patient.name.split("^")
        needles += [family.encode(), patient.patient_id.encode(), patient.birth_date.encode()]
        needles += [patient.phone.encode(), patient.address.split(",")[0].encode()]
        needles.append(given.encode() + b"_" + family.encode())
    return needles + [b"Springfield General", b"HOUSE^GREGORY", b"ACC0000001"]


@dataclass
class Stored:
    """One object as the destination's SDK returns it."""

    data: bytes
    content_type: str
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class Destination:
    """A batch destination under test: its URL, the environment it needs, and a reader."""

    kind: str
    url: str
    env: dict[str, str]
    #: Every object under the destination prefix, by key relative to the prefix.
    read: Callable[[], dict[str, Stored]]


def _s3_reader(endpoint: str, prefix: str) -> Callable[[], dict[str, Stored]]:
    def read() -> dict[str, Stored]:
        import boto3

        client = boto3.client("s3", endpoint_url=endpoint, **AWS_OPTIONS)
        found = {}
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", []):
                got = client.get_object(Bucket=BUCKET, Key=item["Key"])
                found[item["Key"][len(prefix) :]] = Stored(
                    got["Body"].read(), got["ContentType"], dict(got["Metadata"])
                )
        client.close()
        return found

    return read


def _azure_reader(connection_string: str, prefix: str) -> Callable[[], dict[str, Stored]]:
    def read() -> dict[str, Stored]:
        from azure.storage.blob import BlobServiceClient

        found = {}
        with BlobServiceClient.from_connection_string(connection_string) as service:
            container = service.get_container_client(BUCKET)
            for blob in container.list_blobs(name_starts_with=prefix, include=["metadata"]):
                data = container.download_blob(blob.name).readall()
                found[blob.name[len(prefix) :]] = Stored(
                    data, blob.content_settings.content_type or "", dict(blob.metadata or {})
                )
        return found

    return read


def _gcs_reader(endpoint: str, prefix: str) -> Callable[[], dict[str, Stored]]:
    def read() -> dict[str, Stored]:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(
            project="test",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": endpoint},
        )
        found = {}
        for blob in client.list_blobs(BUCKET, prefix=prefix):
            found[blob.name[len(prefix) :]] = Stored(
                blob.download_as_bytes(), blob.content_type, dict(blob.metadata or {})
            )
        client.close()
        return found

    return read


def _file_reader(root: Path) -> Callable[[], dict[str, Stored]]:
    def read() -> dict[str, Stored]:
        found = {}
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root).as_posix()
            if not path.is_file() or relative.startswith(".dicomveil-meta/"):
                continue
            sidecar = root / ".dicomveil-meta" / (relative + ".json")
            meta: dict[str, Any] = json.loads(sidecar.read_text()) if sidecar.exists() else {}
            found[relative] = Stored(
                path.read_bytes(), meta.get("content_type", ""), dict(meta.get("metadata", {}))
            )
        return found

    return read


def s3_destination(endpoint: str, *, via_env: bool = True) -> Destination:
    """An S3 prefix on the moto server; the endpoint given by ``AWS_ENDPOINT_URL``."""
    prefix = f"b-{uuid.uuid4().hex[:10]}"
    env = {
        "AWS_ACCESS_KEY_ID": AWS_OPTIONS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": AWS_OPTIONS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": AWS_OPTIONS["region_name"],
    }
    if via_env:
        env["AWS_ENDPOINT_URL"] = endpoint
    return Destination("s3", f"s3://{BUCKET}/{prefix}", env, _s3_reader(endpoint, prefix + "/"))


def make_destination(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Destination:
    """Build a destination of ``kind`` (file, s3, az, gs), starting its emulator if needed."""
    prefix = f"b-{uuid.uuid4().hex[:10]}"
    if kind == "file":
        root = tmp_path / "dest"
        return Destination("file", root.as_uri(), {}, _file_reader(root))
    if kind == "s3":
        return s3_destination(request.getfixturevalue("s3_endpoint"))
    if kind == "az":
        connection_string = request.getfixturevalue("azurite")
        return Destination(
            "az",
            f"az://{BUCKET}/{prefix}",
            {"AZURE_STORAGE_CONNECTION_STRING": connection_string},
            _azure_reader(connection_string, prefix + "/"),
        )
    endpoint = request.getfixturevalue("gcs_endpoint")
    return Destination(
        "gs",
        f"gs://{BUCKET}/{prefix}",
        {"STORAGE_EMULATOR_HOST": endpoint},
        _gcs_reader(endpoint, prefix + "/"),
    )


def apply_env(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> None:
    """Set ``env`` for the rest of the test."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def only_batch(home: Path) -> str:
    """Return the id of the one batch in the state folder ``home``."""
    (folder,) = (home / "batches").iterdir()
    return folder.name


def check_complete(
    objects: Mapping[str, Stored],
    batch_id: str,
    *,
    images: int,
    studies: int,
    priority: str = "STAT",
    organization: str = "HOSP1",
) -> dict[str, Any]:
    """Assert the batch at the destination is complete and consistent; return its manifest.

    Exactly the manifest and the files it lists are there (nothing partial, nothing extra);
    each file has the manifest's size and SHA-256, Content-Type application/dicom and the
    batch's metadata; the manifest is application/json.
    """
    manifest_object = objects[f"{batch_id}/manifest.json"]
    assert manifest_object.content_type == "application/json"
    assert _user(manifest_object.metadata) == {"batch_id": batch_id, "priority": priority}
    manifest: dict[str, Any] = json.loads(manifest_object.data)
    assert manifest["format_version"] == 1
    assert manifest["batch_id"] == batch_id
    assert manifest["priority"] == priority
    assert manifest["organization"] == organization
    assert manifest["created_at"].endswith("Z")
    assert manifest["total_studies"] == studies == len(manifest["studies"])
    assert manifest["total_images"] == images
    listed = {}
    for study in manifest["studies"]:
        assert study["modalities"] == ["CT"]
        assert study["image_count"] == len(study["files"])
        for item in study["files"]:
            assert item["path"].startswith(study["study_id"] + "/")
            listed[item["path"]] = (item, study["study_id"])
    assert len(listed) == images
    assert set(objects) == {f"{batch_id}/manifest.json"} | {f"{batch_id}/{p}" for p in listed}
    for path, (item, study_id) in listed.items():
        stored = objects[f"{batch_id}/{path}"]
        assert stored.sha256 == item["sha256"] and len(stored.data) == item["size"]
        assert stored.data[128:132] == b"DICM"
        assert stored.content_type == "application/dicom"
        expected = {"batch_id": batch_id, "priority": priority, "study_id": study_id}
        assert _user(stored.metadata) == expected
        assert stored.metadata["sha256"] == item["sha256"]  # the store's own record
    return manifest


def _user(metadata: Mapping[str, str]) -> dict[str, str]:
    """The metadata dicomveil was asked to set (without the store's own ``sha256``)."""
    return {k: v for k, v in metadata.items() if k != "sha256"}


def relative_objects(objects: Mapping[str, Stored], batch_id: str) -> dict[str, str]:
    """Map each object's path inside the batch to its SHA-256 (to compare batches)."""
    return {
        key.partition("/")[2]: item.sha256
        for key, item in objects.items()
        if key.startswith(batch_id + "/") and not key.endswith("manifest.json")
    }


def vault_instances() -> int:
    """Count the instance records of the vault of the current ``$DICOMVEIL_HOME``."""
    from dicomveil.vault import open_vault

    with open_vault(create=False) as vault:
        return vault.stats().instances


def iter_files(folder: Path) -> Iterator[Path]:
    """Every regular file below ``folder``."""
    return (p for p in folder.rglob("*") if p.is_file())
