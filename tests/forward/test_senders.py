"""The webhook, batch and STOW-RS (partial 202) senders, driven through the worker.

A small HTTP server on loopback plays the webhook endpoint and a STOW-RS server that refuses
some instances; batches go to a ``file://`` destination.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pydicom
import pytest

from dicomveil.forward.service import Forwarding
from dicomveil.forward.stow import multipart_body
from dicomveil.runtime import Runtime
from tests.forward.support import SENTINELS, ingest, open_runtime, originals


class Endpoint:
    """What the server received, and what it answers (status, refused SOP Instance UIDs)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.status = 200
        self.refuse: set[str] = set()


@pytest.fixture
def endpoint() -> Iterator[tuple[str, Endpoint]]:
    state = Endpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append((self.path, dict(self.headers), body))
            answer: dict[str, Any] = {}
            status = state.status
            if self.path.endswith("/studies"):
                stored = [uid for uid in _uids(body) if uid not in state.refuse]
                answer = {"00081199": {"vr": "SQ", "Value": [
                    {"00081155": {"vr": "UI", "Value": [uid]}} for uid in stored]}}  # fmt: skip
                status = 202 if state.refuse & set(_uids(body)) else 200
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def _uids(body: bytes) -> list[str]:
    """The SOP Instance UIDs of a multipart STOW-RS body."""
    boundary = body.split(b"\r\n", 1)[0]
    parts = [p.split(b"\r\n\r\n", 1)[1] for p in body.split(boundary)[1:-1]]
    return [pydicom.dcmread(pydicom.filebase.DicomBytesIO(p)).SOPInstanceUID for p in parts]


def _run(forwarding: Forwarding, events: list[Any], rounds: int = 50) -> None:
    """Record, complete and work synchronously (no threads: the clock is the test's)."""
    forwarding.listener(events)
    for _ in range(rounds):
        forwarding.tracker.sweep()
        while forwarding.worker.run_once() is not None:
            pass


class Clock:
    def __init__(self) -> None:
        self.now = 2_000_000.0

    def __call__(self) -> float:
        self.now += 1.0  # every reading moves time on: quiet times and backoffs pass
        return self.now


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    with open_runtime(tmp_path / "home") as opened:
        yield opened


def _forwarding(tmp_path: Path, rules: str, runtime: Runtime) -> Forwarding:
    toml = tmp_path / "routing.toml"
    toml.write_text(f"[routing]\ncompletion_timeout = 3\nbackoff_initial = 1\n{rules}")
    return Forwarding.open(toml, runtime, clock=Clock())


def test_webhook_posts_pseudonymous_ids_and_counts(
    tmp_path: Path,
    endpoint: tuple[str, Endpoint],
    monkeypatch: pytest.MonkeyPatch,
    runtime: Runtime,
) -> None:
    url, state = endpoint
    events = ingest(runtime, originals(tmp_path / "o", 3))
    monkeypatch.setenv("HOOK_TOKEN", "t0k")
    rules = (f'[[routing.rules]]\nname = "hook"\naction = "webhook"\nurl = "{url}/hook"\n'
             'token_env = "HOOK_TOKEN"\npriority = "STAT"\n')  # fmt: skip
    forwarding = _forwarding(tmp_path, rules, runtime)
    try:
        state.status = 503
        _run(forwarding, events, rounds=3)
        assert forwarding.queue.counts()["queued"] == 1
        state.status = 204
        _run(forwarding, [], rounds=5)
        assert forwarding.queue.counts()["done"] == 1
    finally:
        forwarding.stop()
    path, headers, body = state.requests[-1]
    assert path == "/hook" and headers["Authorization"] == "Bearer t0k"
    sent = json.loads(body)
    assert sent == {
        "format_version": 1, "event": "study.complete", "job": 1, "rule": "hook",
        "study_uid": events[0].study_uid, "source": "TESTSCU", "round": 1, "priority": "STAT",
        "instances": 3, "new_instances": 3, "modalities": ["CT"],
    }  # fmt: skip
    for value in SENTINELS:
        assert value.encode() not in body


def test_batch_ships_the_study_with_a_manifest_and_resumes_the_same_batch(
    tmp_path: Path, runtime: Runtime
) -> None:
    outbox = tmp_path / "outbox"
    events = ingest(runtime, originals(tmp_path / "o", 4))
    rules = f'[[routing.rules]]\nname = "tele"\naction = "batch"\nurl = "file://{outbox}"\n'
    forwarding = _forwarding(tmp_path, rules, runtime)
    try:
        read = forwarding.worker._read
        calls = [0]

        def flaky(key: str) -> bytes:  # the archive fails on the third read, once
            calls[0] += 1
            if calls[0] == 3:
                from dicomveil.errors import StorageUnavailable

                raise StorageUnavailable("archive busy")
            return read(key)

        forwarding.worker._read = flaky
        _run(forwarding, events, rounds=5)
        (job,) = forwarding.queue.jobs()
    finally:
        forwarding.stop()
    assert job.state == "done" and job.attempts == 1 and job.error is None
    (batch,) = [p for p in outbox.iterdir() if not p.name.startswith(".")]
    assert batch.name == job.batch_id
    manifest = json.loads((batch / "manifest.json").read_text())
    assert manifest["total_images"] == 4 and manifest["priority"] == "ROUTINE"
    (study,) = manifest["studies"]
    assert study["study_id"] == events[0].study_uid and study["modalities"] == ["CT"]
    assert len({f["sha256"] for f in study["files"]}) == 4
    assert all((batch / f["path"]).is_file() for f in study["files"])
    assert calls[0] == 5  # 4 reads + the failed one: nothing uploaded twice


def test_stow_partial_answer_retries_only_the_refused_instances(
    tmp_path: Path, endpoint: tuple[str, Endpoint], runtime: Runtime
) -> None:
    url, state = endpoint
    events = ingest(runtime, originals(tmp_path / "o", 3))
    state.refuse = {events[1].sop_instance_uid}
    rules = f'[[routing.rules]]\nname = "web"\naction = "stow"\nurl = "{url}/dicom-web"\n'
    forwarding = _forwarding(tmp_path, rules, runtime)
    try:
        forwarding.listener(events)
        while not forwarding.tracker.sweep():
            pass
        assert forwarding.worker.run_once() is not None
        (job,) = forwarding.queue.jobs()
        assert job.state == "queued" and job.error == "STOW-RS refused 1 instance(s) (HTTP 202)"
        state.refuse = set()
        _run(forwarding, [], rounds=5)
        (job,) = forwarding.queue.jobs()
    finally:
        forwarding.stop()
    assert job.state == "done" and job.sent == 3
    sent = [_uids(body) for path, _, body in state.requests]
    assert [len(uids) for uids in sent] == [3, 1] and sent[1] == [events[1].sop_instance_uid]
    assert state.requests[0][0] == "/dicom-web/studies"


def test_multipart_body_is_well_formed() -> None:
    body = multipart_body([b"A", b"BB"], "xyz")
    assert body == (
        b"--xyz\r\nContent-Type: application/dicom\r\n\r\nA\r\n"
        b"--xyz\r\nContent-Type: application/dicom\r\n\r\nBB\r\n--xyz--\r\n"
    )


def test_cstore_goes_on_over_a_new_association_when_one_is_lost(
    tmp_path: Path, runtime: Runtime
) -> None:
    """A peer that leaves one C-STORE unanswered costs one timeout, not a retried forward."""
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    from tests.support.servers import free_port

    received: list[str] = []

    def on_store(event: Any) -> int:
        received.append(event.request.AffectedSOPInstanceUID)
        if len(received) == 3:
            time.sleep(2.5)  # longer than the forward's DIMSE timeout
        return 0x0000

    ae = AE(ae_title="SLOWPEER")
    ae.supported_contexts = AllStoragePresentationContexts
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, on_store)])  # fmt: skip
    events = ingest(runtime, originals(tmp_path / "o", 5))
    rules = (f'timeout = 1\n[[routing.rules]]\nname = "peer"\naction = "cstore"\n'
             f'host = "127.0.0.1"\nport = {port}\nae_title = "SLOWPEER"\n')  # fmt: skip
    forwarding = _forwarding(tmp_path, rules, runtime)
    try:
        _run(forwarding, events, rounds=5)
        (job,) = forwarding.queue.jobs()
    finally:
        forwarding.stop()
        server.shutdown()
    assert job.state == "done" and job.attempts == 0 and job.sent == 5
    assert len(received) == 6 and len(set(received)) == 5  # the unanswered one, sent again


def test_cstore_streams_a_study_over_associations_it_reuses(
    tmp_path: Path, runtime: Runtime
) -> None:
    """Instances stored one per ingest call (as a modality sends them) go out as they
    arrive, over at most ``associations`` associations for the whole study, not one per
    instance; the forward is done once the study completed."""
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    from tests.support.servers import free_port

    received: list[str] = []
    associations: list[str] = []
    ae = AE(ae_title="PEER")
    ae.supported_contexts = AllStoragePresentationContexts
    port = free_port()
    handlers = [
        (evt.EVT_C_STORE, lambda event: received.append(event.request.AffectedSOPInstanceUID)
         or 0x0000),
        (evt.EVT_ACCEPTED, lambda event: associations.append(event.assoc.name)),
    ]  # fmt: skip
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
    toml = tmp_path / "routing.toml"
    toml.write_text(
        f'[routing]\ncompletion_timeout = 1.5\n[[routing.rules]]\nname = "peer"\n'
        f'action = "cstore"\nhost = "127.0.0.1"\nport = {port}\nae_title = "PEER"\n'
        "associations = 2\n"
    )
    forwarding = Forwarding.open(toml, runtime)
    try:
        runtime.ingest.subscribe(forwarding.listener)
        forwarding.start()
        files = originals(tmp_path / "o", 30)
        events = ingest(runtime, files[:20])
        deadline = time.monotonic() + 10
        while len(received) < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        (job,) = forwarding.queue.jobs()
        assert len(received) == 20 and not job.complete  # sent before the completion
        events = [*events, *ingest(runtime, files[20:])]
        while forwarding.queue.counts()["done"] == 0 and time.monotonic() < deadline + 20:
            time.sleep(0.05)
        (job,) = forwarding.queue.jobs()
    finally:
        forwarding.stop()
        server.shutdown()
    assert job.state == "done" and job.complete and (job.sent, job.total) == (30, 30)
    stored = {e.sop_instance_uid for e in events}
    assert len(stored) == 30 and sorted(received) == sorted(stored)  # each once
    assert len(associations) <= 2
