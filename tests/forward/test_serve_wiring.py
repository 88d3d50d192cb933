"""``serve --config`` with a ``[routing]`` table routes what its STOW-RS stores.

The gateway's server process attaches routing to its ingest service
(:func:`dicomveil.forward.service.attach_forwarding`): a study stored over STOW-RS completes
after the quiet time and its webhook is called, with pseudonymous ids only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.forward.support import KEY, SENTINELS, originals
from tests.forward.test_senders import Endpoint, endpoint
from tests.web.gateway_server import running_gateway
from tests.web.support import related_body

__all__ = ["endpoint"]  # the fixture, imported for this module's tests

pytestmark = pytest.mark.server


def test_a_study_stored_by_stow_is_routed_when_complete(
    tmp_path: Path, endpoint: tuple[str, Endpoint]
) -> None:
    url, received = endpoint
    config = tmp_path / "dicomveil.toml"
    config.write_text(
        "[routing]\ncompletion_timeout = 1\n\n"
        f'[[routing.rules]]\nname = "notify"\naction = "webhook"\nurl = "{url}/hook"\n'
    )
    files = originals(tmp_path / "originals", 3)
    with running_gateway(tmp_path / "home", KEY, args=("--config", str(config))) as gateway:
        content_type, body = related_body([p.read_bytes() for p in files])
        answer = httpx.post(
            f"{gateway.url}/dicomweb/studies",
            content=body,
            headers={
                "Content-Type": content_type,
                "Authorization": f"Bearer {gateway.tokens['ingest']}",
            },
            timeout=120,
        )
        assert answer.status_code == 200, answer.text
        retrieve = answer.json()["00081190"]["Value"][0]
        study = retrieve.split("/studies/", 1)[1].split("/")[0]
        deadline = time.monotonic() + 60
        while not received.requests and time.monotonic() < deadline:
            time.sleep(0.2)
        log = gateway.log.read_bytes()
    assert received.requests, "the webhook was not called"
    path, _headers, sent = received.requests[0]
    assert path == "/hook"
    message = json.loads(sent)
    assert message["event"] == "study.complete" and message["study_uid"] == study
    assert message["instances"] == 3 and message["source"] == "stow"
    for value in SENTINELS:
        assert value.encode() not in sent and value.encode() not in log
