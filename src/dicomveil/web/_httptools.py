"""uvicorn's httptools protocol with Nagle's algorithm off (see :mod:`dicomveil.web.server`).

Imported only when ``httptools`` is installed."""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from dicomveil.web.connections import guard
from dicomveil.web.server import set_no_delay

__all__ = ["NoDelayHttpToolsProtocol"]


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with Nagle's algorithm off, under the connection guard."""

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
