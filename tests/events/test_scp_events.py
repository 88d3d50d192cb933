"""Signed CloudEvents from the DICOM node (#15): `dicomveil scp` attaches events as `serve`
does. C-STORE from DCMTK's storescu → instance.stored and study.complete on a real receiver,
signatures verified, no planted value in any body or in the node's log."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from dicomveil.events import SIGNATURE_HEADER, verify
from tests.dimse.scp_server import running_scp
from tests.dimse.support import NODE_AE, SENDER_AE, TEST_KEY, assert_no_phi, dcmtk, phi_study
from tests.events.conftest import Receiver

SECRET = "events-secret-0123456789"
STORED, COMPLETE = "org.dicomveil.instance.stored", "org.dicomveil.study.complete"


def _events(receiver: Receiver, count: int) -> list[tuple[dict[str, str], bytes]]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        events = [(h, b) for p, h, b in list(receiver.requests) if p == "/hook"]
        if len(events) >= count:
            return events
        time.sleep(0.05)
    raise AssertionError(f"{len(receiver.requests)} request(s), expected {count}")


def test_scp_emits_signed_events_for_c_store_without_phi(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DICOMVEIL_EVENTS_SECRET", SECRET)  # the node's environment
    config = tmp_path / "dicomveil.toml"
    config.write_text(
        "[server]\ndeid_processes = 1\n\n"
        f'[dimse]\nallowed_ae_titles = ["{SENDER_AE}"]\n\n'
        f'[events]\nendpoints = ["{receiver.url}"]\nbackoff_seconds = 0.05\n\n'
        "[routing]\ncompletion_timeout = 1\n\n"
        f'[[routing.rules]]\nname = "notify"\naction = "webhook"\nurl = "{receiver.url}2"\n',
        encoding="utf-8",
    )
    files = phi_study(tmp_path / "study", images=2)
    with running_scp(tmp_path / "home", TEST_KEY, args=("--config", str(config))) as node:
        sent = dcmtk("storescu", "-aet", SENDER_AE, "-aec", NODE_AE, "127.0.0.1", node.port, *files)
        assert sent.returncode == 0, sent.stderr
        events = _events(receiver, 3)
    assert sorted(json.loads(b)["type"] for _, b in events) == [STORED, STORED, COMPLETE]
    for headers, raw in events:
        assert verify(SECRET.encode(), raw, headers[SIGNATURE_HEADER])
        assert_no_phi(raw, "an event")
    stored = [json.loads(b)["data"] for _, b in events if STORED.encode() in b]
    assert all(item["entry"] == "dimse" for item in stored), stored
    assert_no_phi(node.log.read_text(), "the node's log")
