"""uvicorn's httptools protocol with Nagle's algorithm off (see :mod:`dicomveil.web.server`).

Imported only when ``httptools`` is installed."""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from dicomveil.web.server import GuardedConnection

__all__ = ["NoDelayHttpToolsProtocol"]


class NoDelayHttpToolsProtocol(GuardedConnection, HttpToolsProtocol):
    """uvicorn's httptools protocol, with Nagle's algorithm off, under the connection guard."""
