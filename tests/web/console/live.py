"""A gateway app served by uvicorn in a thread on a free loopback port, for browser tests.

The app is built in this process (so the code under test is this worktree's), with one
token per role and the demo study (full of planted PHI) stored through STOW-RS.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from dicomveil.tokens import ROLES, token_store
from dicomveil.web import Settings, create_app
from tests.support.servers import free_port
from tests.web.support import related_body

__all__ = ["Live", "live_gateway", "store_files"]


@dataclass(frozen=True)
class Live:
    """A running app: its base URL, settings, one token per role."""

    url: str
    settings: Settings
    tokens: dict[str, str]

    def client(self, role: str) -> httpx.Client:
        """An HTTP client with the bearer token of ``role``."""
        headers = {"Authorization": f"Bearer {self.tokens[role]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@contextmanager
def live_gateway(settings: Settings) -> Iterator[Live]:
    """Serve ``create_app(settings)`` until the block ends."""
    app = create_app(settings)
    store = token_store(settings.home)
    tokens = {role: store.create(role, f"browser-{role}")[1] for role in ROLES}
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="live-gateway", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.05)
        yield Live(f"http://127.0.0.1:{port}", settings, tokens)
    finally:
        server.should_exit = True
        thread.join(20)


def store_files(live: Live, files: list[Path]) -> list[str]:
    """STOW-RS ``files``; return the pseudonymous Study Instance UIDs stored."""
    content_type, body = related_body([p.read_bytes() for p in files])
    with live.client("ingest") as client:
        answer = client.post(
            "/dicomweb/studies", content=body, headers={"Content-Type": content_type}
        )
    assert answer.status_code == 200, answer.text
    urls = [item["00081190"]["Value"][0] for item in answer.json()["00081199"]["Value"]]
    return sorted({url.split("/studies/", 1)[1].split("/")[0] for url in urls})
