"""Glue between ``dicomveil serve`` and uvicorn.

:class:`NoDelayH11Protocol` is uvicorn's h11 protocol with ``TCP_NODELAY`` set on every
connection. uvicorn's multi-worker mode hands its workers a listening socket created without
``IPPROTO_TCP``, so asyncio leaves Nagle's algorithm on for the accepted connections, and every
answer written in two parts waits for the client's delayed ACK: about 40 ms per request.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Final

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["HTTP_PROTOCOL", "NoDelayH11Protocol"]

HTTP_PROTOCOL: Final = "dicomveil.web.server:NoDelayH11Protocol"
"""What ``uvicorn.run(http=...)`` takes to use :class:`NoDelayH11Protocol` in every worker."""


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with Nagle's algorithm off for the connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - a socket that refuses: keep Nagle
                pass
        super().connection_made(transport)
