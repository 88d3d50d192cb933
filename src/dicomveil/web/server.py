"""Glue between ``dicomveil serve`` and uvicorn: the HTTP protocol every worker runs.

uvicorn's multi-worker mode hands its workers a listening socket created without
``IPPROTO_TCP``, so asyncio leaves Nagle's algorithm on for the accepted connections, and every
answer written in two parts waits for the client's delayed ACK: about 40 ms per request. The
protocols here are uvicorn's with ``TCP_NODELAY`` set on every connection:
:class:`NoDelayH11Protocol` (pure Python, always there) and, when ``httptools`` is installed
(the ``server`` extra), ``NoDelayHttpToolsProtocol``, whose C parser costs a fraction of h11's
CPU per request. :func:`http_protocol` names the one to use.

Both also report every connection to the process's
:class:`~dicomveil.web.connections.ConnectionGuard` (header and body timeouts, connection
cap).
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol

from dicomveil.web.connections import guard

__all__ = ["GuardedConnection", "NoDelayH11Protocol", "http_protocol", "set_no_delay"]


def set_no_delay(transport: asyncio.BaseTransport) -> None:
    """Turn Nagle's algorithm off for the TCP connection of ``transport`` (others: no-op)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - a socket that refuses: keep Nagle
            pass


class GuardedConnection(asyncio.Protocol):
    """Mixin for a uvicorn protocol: Nagle's algorithm off, every connection under the
    process's connection guard (put it before the protocol class in the bases)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_no_delay(transport)
        super().connection_made(transport)
        guard.admit(self, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        guard.release(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        guard.before_data(self)
        super().data_received(data)
        guard.after_data(self)


class NoDelayH11Protocol(GuardedConnection, H11Protocol):
    """uvicorn's h11 protocol, with Nagle's algorithm off, under the connection guard."""


def http_protocol() -> str:
    """What ``uvicorn.run(http=...)`` takes: httptools' protocol when installed, else h11's."""
    if importlib.util.find_spec("httptools") is not None:
        return "dicomveil.web._httptools:NoDelayHttpToolsProtocol"
    return "dicomveil.web.server:NoDelayH11Protocol"
