"""``dicomveil scp`` and ``serve --dimse-port`` as real processes: DCMTK peers, signals,
kill -9 mid-association, PHI in the log."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from dicomveil.cli.main import main
from tests.dimse.scp_server import running_scp
from tests.dimse.support import (
    NODE_AE,
    SENDER_AE,
    TEST_KEY,
    assert_no_phi,
    client_ae,
    dcmtk,
    phi_study,
)
from tests.events.conftest import Receiver, running_receiver
from tests.support.servers import free_port
from tests.web.gateway_server import running_gateway

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
EVENTS_SECRET = "events-secret-for-the-node-tests-0123456789"
FAST = "[server]\ndeid_processes = 1\n"
"""De-identify in the node's process: no worker processes to start (the test is faster)."""


def _config(folder: Path, text: str) -> Path:
    path = folder / "dicomveil.toml"
    path.write_text(text)
    return path


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scp", "--help"]) == 0
    text = capsys.readouterr().out
    for word in ("--port", "--ae-title", "--config", "allowed_ae_titles", "storescu", "ingest"):
        assert word in text


def test_bad_dimse_settings_fail_with_one_line(tmp_path: Path, capsys: Any) -> None:
    config = _config(tmp_path, "[dimse]\nmax_associations = 0\n")
    assert main(["scp", "--config", str(config)]) != 0
    assert "max_associations" in capsys.readouterr().err


def test_scp_process_stores_queries_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = _config(tmp_path, f'{FAST}[dimse]\nallowed_ae_titles = ["{SENDER_AE}"]\n')
    files = phi_study(tmp_path / "study", images=3)
    with running_scp(tmp_path / "home", TEST_KEY, args=("--config", str(config))) as node:
        echo = dcmtk("echoscu", "-aet", SENDER_AE, "-aec", NODE_AE, "127.0.0.1", node.port)
        refused = dcmtk("echoscu", "-aet", "OTHER", "-aec", NODE_AE, "127.0.0.1", node.port)
        sent = dcmtk("storescu", "-aet", SENDER_AE, "-aec", NODE_AE, "127.0.0.1", node.port, *files)
        out = tmp_path / "found"
        out.mkdir()
        found = dcmtk(
            "findscu", "-S", "-X", "-aet", SENDER_AE, "-aec", NODE_AE,
            "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", "-k", "PatientName",
            "127.0.0.1", node.port, cwd=out,
        )  # fmt: skip
        os.kill(node.proc.pid, signal.SIGTERM)
        code = node.proc.wait(20)
    assert (echo.returncode, sent.returncode, found.returncode) == (0, 0, 0), sent.stderr
    assert refused.returncode != 0
    assert code == 0
    answers = list(out.iterdir())
    assert len(answers) == 1
    assert_no_phi(answers[0].read_bytes(), "a C-FIND answer")
    log = node.log.read_text()
    assert "stopping the DICOM node" in log
    assert "allowed_ae_titles is empty" not in log
    assert_no_phi(log, "the node's log")


def test_any_caller_is_warned(tmp_path: Path) -> None:
    args = ("--config", str(_config(tmp_path, FAST)))
    with running_scp(tmp_path / "home", TEST_KEY, args=args) as node:
        done = dcmtk("echoscu", "-aet", "ANYONE", "-aec", NODE_AE, "127.0.0.1", node.port)
    assert done.returncode == 0
    assert "allowed_ae_titles is empty" in node.log.read_text()


@pytest.mark.slow
def test_kill_9_mid_association_loses_nothing_acknowledged(tmp_path: Path) -> None:
    files = phi_study(tmp_path / "study", images=40)
    home, port = tmp_path / "home", free_port()
    acknowledged: list[str] = []
    args = ("--config", str(_config(tmp_path, FAST)))
    with running_scp(home, TEST_KEY, port=port, args=args) as node:
        assoc = client_ae(CT_IMAGE).associate("127.0.0.1", port, ae_title=NODE_AE)
        assert assoc.is_established

        def send() -> None:
            for path in files:
                ds = pydicom.dcmread(path)
                try:
                    status = assoc.send_c_store(ds)
                except Exception:
                    return
                if status and status.Status == 0:
                    acknowledged.append(str(ds.SOPInstanceUID))

        sender = threading.Thread(target=send)
        sender.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.killpg(node.proc.pid, signal.SIGKILL)
        node.proc.wait(10)
        sender.join(30)
        assoc.abort()
    assert 5 <= len(acknowledged) < len(files)
    spool = home / "spool"
    left = [p for p in spool.rglob("*") if p.is_file() and p.name != ".lock"]
    with running_scp(home, TEST_KEY, port=port, args=args) as node:
        swept = [p for p in spool.rglob("*") if p.is_file() and p.name != ".lock"]
        out = tmp_path / "found"
        out.mkdir()
        found = dcmtk(
            "findscu", "-S", "-X", "-aet", SENDER_AE, "-aec", NODE_AE,
            "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID",
            "-k", "NumberOfStudyRelatedInstances", "127.0.0.1", port, cwd=out,
        )  # fmt: skip
    assert found.returncode == 0
    (answer,) = [pydicom.dcmread(p) for p in out.iterdir()]
    assert answer.NumberOfStudyRelatedInstances >= len(acknowledged)
    assert not (set(swept) & set(left))  # what the killed node left in its spool is gone
    from dicomveil.runtime import Runtime
    from dicomveil.settings import CoreSettings

    os.environ["DICOMVEIL_KEY"] = TEST_KEY
    try:
        with Runtime.open(CoreSettings.load(home=home, deid_processes=1)) as runtime:
            stored = runtime.index.instances(str(answer.StudyInstanceUID))
            for item in stored:  # every indexed instance is in the archive
                assert runtime.store.head(item.storage_key) is not None
    finally:
        del os.environ["DICOMVEIL_KEY"]
    assert len(stored) >= len(acknowledged)


def _events_config(folder: Path, hook: str, extra: str = "") -> Path:
    return _config(folder, f'{extra}[events]\nendpoints = ["{hook}"]\nbackoff_seconds = 0.05\n')


@pytest.fixture
def webhooks() -> Iterator[Receiver]:
    """A webhook receiver on loopback (what the node's `[events]` deliver to)."""
    with running_receiver() as state:
        yield state


def _stored_events(webhooks: Receiver, count: int) -> list[bytes]:
    webhooks.wait_for(count)
    return [body for _, _, body in webhooks.requests if b"instance.stored" in body]


def test_scp_emits_instance_events_for_cstored_instances(
    tmp_path: Path, webhooks: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dicomveil scp` delivers `[events]` too (it attached none: C-STORE was silent)."""
    monkeypatch.setenv("DICOMVEIL_EVENTS_SECRET", EVENTS_SECRET)
    config = _events_config(tmp_path, webhooks.url, FAST)
    files = phi_study(tmp_path / "study", images=2)
    with running_scp(tmp_path / "home", TEST_KEY, args=("--config", str(config))) as node:
        sent = dcmtk("storescu", "-aet", SENDER_AE, "-aec", NODE_AE, "127.0.0.1", node.port, *files)
        assert sent.returncode == 0, sent.stderr
        bodies = _stored_events(webhooks, 2)
    assert [json.loads(b)["data"]["entry"] for b in bodies] == ["dimse", "dimse"]
    assert_no_phi(b"".join(bodies), "an event sent for a C-STORE")


@pytest.mark.slow
@pytest.mark.server
def test_serve_with_dimse_port_shares_the_archive(
    tmp_path: Path, webhooks: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DICOMVEIL_EVENTS_SECRET", EVENTS_SECRET)
    dimse = free_port()
    files = phi_study(tmp_path / "study", images=2)
    config = _events_config(tmp_path, webhooks.url)
    args = ("--dimse-port", str(dimse), "--deid-processes", "1", "--config", str(config))
    with running_gateway(tmp_path / "home", TEST_KEY, args=args) as gateway:
        sent = dcmtk("storescu", "-aet", SENDER_AE, "-aec", NODE_AE, "127.0.0.1", dimse, *files)
        request = urllib.request.Request(
            f"{gateway.url}/dicomweb/studies?includefield=NumberOfStudyRelatedInstances",
            headers={"Authorization": f"Bearer {gateway.tokens['read']}"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            studies = json.loads(answer.read())
        bodies = _stored_events(webhooks, 2)  # from the node's runtime, as STOW-RS's would be
    assert sent.returncode == 0, sent.stderr
    assert len(studies) == 1
    assert studies[0]["00201208"]["Value"] == [2]
    assert_no_phi(json.dumps(studies), "a QIDO-RS answer")
    assert "DICOM node DICOMVEIL" in gateway.log.read_text()
    assert [json.loads(b)["data"]["entry"] for b in bodies] == ["dimse", "dimse"]
