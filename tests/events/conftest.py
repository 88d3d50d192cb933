"""A webhook receiver on loopback: records each request, answers from a script of statuses."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.web.conftest import (  # noqa: F401 - the gateway's fixtures, for the events tests
    anyio_backend,
    demo_files,
    home,
    key_file,
    tokens,
)


class Receiver:
    """What the receiver got (path, headers, raw body), and what it answers next."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.statuses: list[int] = []  # answered in turn; then 204
        self.got = threading.Condition()
        self.url = ""

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        with self.got:
            if not self.got.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"{len(self.requests)} request(s), expected {count}")


def serve(state: Receiver, port: int = 0) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = state.statuses.pop(0) if state.statuses else 204
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            with state.got:
                state.requests.append((self.path, dict(self.headers), body))
                state.got.notify_all()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    return server


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    """A :class:`Receiver` served on loopback for the block (its URL in ``.url``)."""
    state = Receiver()
    server = serve(state)
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as state:
        yield state
