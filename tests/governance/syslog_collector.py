"""A tiny syslog collector for tests: RFC 6587 octet-counted frames over TCP or TLS."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class Collector:
    """Listens on 127.0.0.1; keeps every message received, in order."""

    def __init__(self, context: ssl.SSLContext | None = None, port: int = 0) -> None:
        self.messages: list[str] = []
        self.raw = bytearray()
        self._context = context
        self._server = socket.create_server(("127.0.0.1", port))
        self.port = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection: socket.socket) -> None:
        try:
            if self._context is not None:
                connection = self._context.wrap_socket(connection, server_side=True)
            buffer = b""
            while chunk := connection.recv(65536):
                buffer += chunk
                with self._lock:
                    self.raw += chunk
                while b" " in buffer:
                    length, _, rest = buffer.partition(b" ")
                    size = int(length)
                    if len(rest) < size:
                        break
                    with self._lock:
                        self.messages.append(rest[:size].decode("utf-8"))
                    buffer = rest[size:]
        except (OSError, ssl.SSLError):
            pass
        finally:
            connection.close()

    def wait_for(self, count: int, timeout: float = 15.0) -> list[str]:
        """The messages, once at least ``count`` arrived (or the timeout passed)."""
        end = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < end:
            time.sleep(0.02)
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self._server.close()


@contextmanager
def collector(context: ssl.SSLContext | None = None) -> Iterator[Collector]:
    found = Collector(context)
    try:
        yield found
    finally:
        found.close()


def tls_context(folder: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context with a fresh self-signed certificate for 127.0.0.1; and its PEM."""
    from tests.web.test_clients import _self_signed

    cert_path, key_path = _self_signed(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path
