"""Crash safety: ``kill -9`` the batch process anywhere, resume, get exactly one clean batch.

The batch command runs as a real process (with its de-identification workers) and is killed
with SIGKILL at chosen points (mid de-identification, between the vault and the journal,
mid upload, between an upload and its journal record, just before and just after the
manifest) and at random moments. ``dicomveil batch resume ID`` must then finish the batch so
that the destination holds exactly what a clean run produces: the same objects, byte for
byte, a complete manifest, nothing partial, and the vault one record per instance.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dicomveil.demo import write_demo_study
from dicomveil.pipeline.journal import batch_locked
from tests.pipeline.batch_support import (
    PATIENTS,
    REPO,
    RUNNER,
    Destination,
    apply_env,
    check_complete,
    cli_main,
    make_destination,
    only_batch,
    relative_objects,
    run_cli,
    s3_destination,
    vault_instances,
)
from tests.support.cloud import AWS_OPTIONS, BUCKET
from tests.support.servers import free_port, wait_http

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.slow]

IMAGES, STUDIES = PATIENTS * 2 * 3, PATIENTS
POINTS = ["deidentify:7", "vault:1", "upload:5", "uploaded:9", "manifest", "manifested"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What a clean, uninterrupted run puts at the destination: path -> SHA-256."""
    root = tmp_path_factory.mktemp("reference")
    study = root / "in"
    write_demo_study(study, patients=PATIENTS, series_per_study=2, images_per_series=3)
    key = root / "key"
    key.write_text("batch-test-pseudonym-key-0123456789\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DICOMVEIL_HOME", str(root / "home"))
        argv = ["batch", str(study), "--dest", str(root / "dest"), "--org", "HOSP1"]
        assert cli_main([*argv, "--key-file", str(key), "-j", "1"]) == 0
    (batch,) = (root / "home" / "batches").iterdir()
    files = (root / "dest" / batch.name).rglob("*.dcm")
    return {
        p.relative_to(root / "dest" / batch.name).as_posix(): _sha256(p.read_bytes()) for p in files
    }


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _start(dest: Destination, study: Path, key_file: Path) -> list[str]:
    return [
        "batch", str(study), "--dest", dest.url, "--priority", "STAT", "--org", "HOSP1",
        "--key-file", str(key_file), "-j", "2", "--transfers", "4",
    ]  # fmt: skip


def _resume_and_check(
    dest: Destination, batch_home: Path, key_file: Path, reference: dict[str, str]
) -> None:
    batch_id = only_batch(batch_home)
    code = cli_main(["batch", "resume", batch_id, "--key-file", str(key_file), "-j", "1"])
    assert code == 0
    objects = dest.read()
    check_complete(objects, batch_id, images=IMAGES, studies=STUDIES)
    assert relative_objects(objects, batch_id) == reference  # same objects, byte for byte
    assert vault_instances() == IMAGES  # no duplicate (and no missing) vault record
    assert [p.name for p in (batch_home / "batches" / batch_id).iterdir()] == ["summary.json"]


def _no_partial_uploads(dest: Destination, endpoint: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, **AWS_OPTIONS)
    prefix = dest.url.removeprefix(f"s3://{BUCKET}/")
    assert not client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads")
    client.close()


@pytest.mark.cloud
@pytest.mark.parametrize("point", POINTS)
def test_kill_at_a_point_then_resume(
    point: str,
    s3_endpoint: str,
    batch_home: Path,
    key_file: Path,
    study: Path,
    reference: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dest = s3_destination(s3_endpoint)
    apply_env(monkeypatch, dest.env)
    crashed = run_cli(_start(dest, study, key_file), dest.env, crash_at=point)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    batch_id = only_batch(batch_home)
    before = dest.read()
    manifest_seen = f"{batch_id}/manifest.json" in before
    assert manifest_seen == (point == "manifested")  # never a manifest before the end
    for key, item in before.items():  # whatever is visible is whole and verified
        assert item.metadata.get("sha256") == item.sha256, key
    _no_partial_uploads(dest, s3_endpoint)
    _resume_and_check(dest, batch_home, key_file, reference)


@pytest.mark.parametrize("point", ["deidentify:4", "uploaded:6"])
def test_kill_then_resume_to_local_disk(
    point: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    batch_home: Path,
    key_file: Path,
    study: Path,
    reference: dict[str, str],
) -> None:
    dest = make_destination("file", request, tmp_path)
    crashed = run_cli(_start(dest, study, key_file), dest.env, crash_at=point)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    _resume_and_check(dest, batch_home, key_file, reference)


@pytest.mark.cloud
@pytest.mark.parametrize("seed", [1, 2])
def test_kill_at_a_random_moment_then_resume(
    seed: int,
    s3_endpoint: str,
    batch_home: Path,
    key_file: Path,
    study: Path,
    reference: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dest = s3_destination(s3_endpoint)
    apply_env(monkeypatch, dest.env)
    proc = subprocess.Popen(
        [sys.executable, str(RUNNER), *_start(dest, study, key_file)],
        env={**os.environ, **dest.env, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        created = time.monotonic() + 30
        while not (batch_home / "batches").is_dir() and time.monotonic() < created:
            time.sleep(0.01)  # the batch exists: from now on, any moment will do
        deadline = time.monotonic() + random.Random(seed).uniform(0.0, 1.5)
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    _resume_and_check(dest, batch_home, key_file, reference)


@pytest.mark.cloud
def test_destination_down_stops_resumable_then_resume_succeeds(
    s3_endpoint: str,
    batch_home: Path,
    key_file: Path,
    study: Path,
    reference: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()  # nothing listens here yet
    down = f"http://127.0.0.1:{port}"
    dest = s3_destination(down, via_env=False)
    apply_env(monkeypatch, dest.env)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    argv = [*_start(dest, study, key_file), "--endpoint-url", down, "--retries", "2"]
    argv[argv.index("-j") + 1] = "1"
    started = time.monotonic()
    assert cli_main(argv) == 1
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err
    batch_id = only_batch(batch_home)
    assert "unavailable after 2 retries" in err and "retrying:" in err
    assert f"dicomveil batch resume {batch_id}" in err
    staging = batch_home / "batches" / batch_id
    assert len(list((staging / "staged").rglob("*.dcm"))) == IMAGES  # kept for the resume
    assert cli_main(["batch", "status", batch_id, "--json"]) == 0
    assert '"state": "stopped"' in capsys.readouterr().out
    with batch_locked(staging):  # another process on it: refused
        assert cli_main(["batch", "resume", batch_id, "--key-file", str(key_file)]) == 2
    other = _other_key(key_file)
    assert cli_main(["batch", "resume", batch_id, "--key-file", str(other)]) == 2
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()  # the destination comes back (same moto state: the bucket exists)
    try:
        wait_http(down + "/", timeout=15)
        _resume_and_check(dest, batch_home, key_file, reference)  # endpoint from the journal
    finally:
        server.stop()


def _other_key(key_file: Path) -> Path:
    other = key_file.with_name("other.key")
    other.write_text("a-different-pseudonym-key-987654321\n")
    return other


def test_failed_inputs_are_quarantined_across_a_crash(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    batch_home: Path,
    key_file: Path,
    study: Path,
) -> None:
    good = next(study.rglob("*.dcm"))
    (study / "A_cut.dcm").write_bytes(good.read_bytes()[:300])  # discovered first
    (study / "B_notes.txt").write_text("not dicom")
    dest = make_destination("file", request, tmp_path)
    crashed = run_cli(_start(dest, study, key_file), dest.env, crash_at="deidentify:9")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    batch_id = only_batch(batch_home)
    assert not (batch_home / "quarantine" / batch_id).exists()
    argv = ["batch", "resume", batch_id, "--key-file", str(key_file), "-j", "1"]
    assert cli_main(argv) == 1  # complete, but two inputs failed
    reasons = (batch_home / "quarantine" / batch_id / "reasons.json").read_text()
    assert reasons.count('"reason"') == 2
    check_complete(dest.read(), batch_id, images=IMAGES, studies=STUDIES)
    assert vault_instances() == IMAGES
