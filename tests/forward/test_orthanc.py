"""Orthanc as the receiver of forwarded studies: C-STORE SCU and STOW-RS routes, PHI, crashes.

Each test de-identifies a synthetic study with PHI planted into a real ``file://`` archive,
feeds routing the ingest events, and checks what Orthanc received through its REST API.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest

from dicomveil.forward.queue import ForwardQueue
from dicomveil.forward.report import describe
from dicomveil.forward.service import Forwarding
from dicomveil.forward.settings import RoutingSettings
from tests.forward.orthanc import AET, Orthanc, running_receiver
from tests.forward.support import KEY, SENTINELS, ingest, open_runtime, originals
from tests.support.servers import free_port

pytestmark = pytest.mark.server

REPO = Path(__file__).resolve().parents[2]


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def phi_of(paths: list[Path]) -> set[bytes]:
    """The original identifying values of the study: none may leave dicomveil."""
    values: set[bytes] = {s.encode() for s in SENTINELS}
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "SeriesInstanceUID",
                        "SOPInstanceUID", "StudyID"):  # fmt: skip
            value = str(ds.get(keyword, "") or "")
            if len(value) >= 4:
                values.add(value.encode())
        values.update(p.encode() for p in str(ds.PatientName).split("^") if len(p) >= 4)
    return values


@pytest.fixture(scope="module")
def receivers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Orthanc, Orthanc]]:
    """Two Orthancs: one receives the C-STORE route, the other the STOW-RS route."""
    base = tmp_path_factory.mktemp("receivers")
    with running_receiver(base / "dimse") as dimse, running_receiver(base / "web") as web:
        yield dimse, web


def test_cstore_and_stow_routes_deliver_the_deidentified_study(
    receivers: tuple[Orthanc, Orthanc], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dimse, web = receivers
    caplog.set_level(logging.DEBUG)
    home = tmp_path / "home"
    files = originals(tmp_path / "originals", 12, series=2)  # 2 associations
    toml = tmp_path / "routing.toml"
    toml.write_text(
        f"""
[dimse]
ae_title = "VEILTEST"
[dimse.destinations.{AET}]
host = "127.0.0.1"
port = {dimse.dicom_port}
[routing]
completion_timeout = 0.5
[[routing.rules]]
name = "pacs"
match = {{ calling_ae = "TEST*", Modality = "CT" }}
action = "cstore"
destination = "{AET}"
priority = "STAT"
[[routing.rules]]
name = "cloud"
action = "stow"
url = "{web.dicomweb}"
token_env = "ROUTING_TEST_TOKEN"
[[routing.rules]]
name = "never"
match = {{ Modality = "MR" }}
action = "stow"
url = "{web.dicomweb}"
"""
    )
    os.environ["ROUTING_TEST_TOKEN"] = "not-checked-by-orthanc"
    runtime = open_runtime(home)
    forwarding = Forwarding.open(toml, runtime)
    try:
        runtime.ingest.subscribe(forwarding.listener)
        forwarding.start()
        events = ingest(runtime, files)  # one file per call, as the DIMSE receiver does
        wait_until(lambda: forwarding.queue.counts()["done"] == 2, 60, "both forwards")
    finally:
        forwarding.stop()
        runtime.close()
        del os.environ["ROUTING_TEST_TOKEN"]
    assert dimse.count() == 24 and web.count() == 24
    assert dimse.stores_received() == 24
    phi = phi_of(files)
    for received in dimse.files() + web.files():
        assert not [value for value in phi if value in received]
        ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(received))
        assert ds.StudyInstanceUID == events[0].study_uid and ds.PatientIdentityRemoved == "YES"
    entries = [e for e in runtime.audit.entries() if e.event == "forward.study"]
    assert sorted((e.details["rule"], e.outcome, e.details["sent"]) for e in entries) == [
        ("cloud", "success", 24),
        ("pacs", "success", 24),
    ]
    assert {e.details["destination"] for e in entries} == {
        f"{AET}@127.0.0.1:{dimse.dicom_port}",
        web.dicomweb,
    }
    audit_bytes = b"".join(p.read_bytes() for p in (home / "audit").rglob("*") if p.is_file())
    logged = "\n".join(r.getMessage() for r in caplog.records).encode()
    for blob in (audit_bytes, logged, forwarding_db(home)):
        assert not [value for value in phi if value in blob]


def test_on_arrival_forwards_while_storescu_sends_and_on_complete_waits(
    receivers: tuple[Orthanc, Orthanc], tmp_path: Path
) -> None:
    """DCMTK ``storescu`` pushes a study to ``dicomveil scp``: the C-STORE route (on
    arrival, the default) has delivered it to Orthanc while the study is still open; the
    STOW-RS route (``send = "on-complete"``) sends nothing before the completion; both are
    done, the study complete in each Orthanc, once it completed."""
    from tests.dimse.scp_server import running_scp
    from tests.dimse.support import dcmtk

    dimse, web = receivers
    before = (dimse.count(), web.count(), dimse.stores_received())
    files = originals(tmp_path / "originals", 30, seed=11)
    toml = tmp_path / "node.toml"
    toml.write_text(
        f"""
[routing]
completion_timeout = 5
[[routing.rules]]
name = "pacs"
action = "cstore"
host = "127.0.0.1"
port = {dimse.dicom_port}
ae_title = "{AET}"
associations = 2
[[routing.rules]]
name = "cloud"
action = "stow"
url = "{web.dicomweb}"
send = "on-complete"
"""
    )
    home = tmp_path / "home"
    with running_scp(home, KEY, args=("--config", str(toml))) as node:
        queue = ForwardQueue.open(RoutingSettings.load(toml, home=home).queue_url)
        try:
            pushed = dcmtk("storescu", "-aet", "MODALITY", "-aec", "DICOMVEIL", "127.0.0.1",
                           node.port, *files, timeout=120)  # fmt: skip
            assert pushed.returncode == 0, pushed.stderr[-300:]
            wait_until(lambda: dimse.count() - before[0] == 30, 30, "the on-arrival forward")
            assert queue.open_rounds(), "the study completed before it was forwarded"
            assert web.count() == before[1]  # the on-complete route waits
            (streaming,) = [describe(job) for job in queue.jobs()]
            assert streaming["rule"] == "pacs" and streaming["study_complete"] is False
            assert streaming["sent"] == streaming["instances"] == 30
            wait_until(lambda: queue.counts()["done"] == 2, 60, "both forwards done")
            jobs = {job.rule: job for job in queue.jobs()}
        finally:
            queue.close()
        log = node.log.read_bytes()
    assert dimse.count() - before[0] == 30 and web.count() - before[1] == 30
    assert dimse.stores_received() - before[2] == 30  # each instance sent once
    assert jobs["pacs"].complete and (jobs["pacs"].sent, jobs["pacs"].total) == (30, 30)
    assert (jobs["cloud"].sent, jobs["cloud"].total) == (30, 30)
    assert not [value for value in phi_of(files) if value in log]


def forwarding_db(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.glob("routing.sqlite*"))


def test_dead_letter_after_retries_to_a_closed_port(tmp_path: Path) -> None:
    home = tmp_path / "home"
    toml = tmp_path / "routing.toml"
    toml.write_text(
        f"""
[routing]
completion_timeout = 0.2
max_attempts = 3
backoff_initial = 0.1
backoff_max = 0.2
timeout = 2
[[routing.rules]]
name = "nowhere"
action = "cstore"
host = "127.0.0.1"
port = {free_port()}
ae_title = "NOBODY"
"""
    )
    runtime = open_runtime(home)
    forwarding = Forwarding.open(toml, runtime)
    try:
        runtime.ingest.subscribe(forwarding.listener)
        forwarding.start()
        ingest(runtime, originals(tmp_path / "originals", 2))
        wait_until(lambda: forwarding.queue.counts()["dead"] == 1, 60, "the dead letter")
        (dead,) = forwarding.queue.jobs(["dead"])
    finally:
        forwarding.stop()
        runtime.close()
    assert dead.attempts == 3 and dead.target.startswith("NOBODY@127.0.0.1:")
    assert dead.error == f"no association with {dead.target} (refused or aborted)"
    outcomes = [e.details["state"] for e in runtime.audit.entries() if e.event == "forward.study"]
    assert outcomes == ["queued", "queued", "dead"]


@pytest.mark.slow
def test_kill_9_mid_stream_resumes_and_sends_nothing_twice(
    receivers: tuple[Orthanc, Orthanc], tmp_path: Path
) -> None:
    """The node dies while the study is still arriving and being forwarded; after the
    restart the sender delivers the rest, and only what Orthanc never acknowledged goes."""
    dimse, _ = receivers
    before_count, before_stores = dimse.count(), dimse.stores_received()
    home = tmp_path / "home"
    files = originals(tmp_path / "o", 60, seed=7)
    first_files, rest_files = tmp_path / "first.json", tmp_path / "rest.json"
    first_files.write_text(json.dumps([str(p) for p in files[:40]]))
    rest_files.write_text(json.dumps([str(p) for p in files[40:]]))
    toml = tmp_path / "routing.toml"
    toml.write_text(
        f"""
[routing]
completion_timeout = 4
lease = 2
[[routing.rules]]
name = "pacs"
action = "cstore"
host = "127.0.0.1"
port = {dimse.dicom_port}
ae_title = "{AET}"
associations = 1
"""
    )
    pause = tmp_path / "paused"
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{REPO}"}
    command = [sys.executable, "-m", "tests.forward.forward_proc", str(home), str(toml)]
    first = subprocess.Popen(
        [*command, str(first_files), "25", str(pause)], env=env, cwd=REPO,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_until(lambda: pause.exists() or first.poll() is not None, 120, "the pause")
        assert first.poll() is None, "the forward ended before the kill"
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert dimse.count() - before_count == 24  # streamed one by one, then the kill
    settings = RoutingSettings.load(toml, home=home)
    queue = ForwardQueue.open(settings.queue_url)
    try:
        (job,) = queue.jobs()
        assert [due.instances for due in queue.open_rounds()] != []  # still arriving
        assert job.state == "running" and not job.complete and job.sent == 24
    finally:
        queue.close()
    second = subprocess.run(
        [*command, str(rest_files), "0", str(pause)], check=False, env=env, cwd=REPO,
        timeout=120,
    )  # fmt: skip
    assert second.returncode == 0
    assert dimse.count() - before_count == 60
    assert dimse.stores_received() - before_stores == 60  # nothing sent twice
    queue = ForwardQueue.open(settings.queue_url)
    try:
        jobs = queue.jobs()
        assert {job.state for job in jobs} == {"done"} and all(job.complete for job in jobs)
        assert sum(job.sent for job in jobs) == 60  # each acknowledgement recorded once
        assert queue.sent_count(f"cstore:{jobs[0].target}") == 60
    finally:
        queue.close()
