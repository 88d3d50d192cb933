"""Slow and idle clients: time limits on each connection, and a cap on open connections.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but gives a client all
the time in the world to send its request headers or body: a few hundred connections that
send half a request line and then nothing hold as many file descriptors, until the process
runs out of them and cannot accept ``/healthz`` any more. The server's HTTP protocols (see
:mod:`dicomveil.web.server`) report to the one :class:`ConnectionGuard` of their process:

- **header timeout**: a request's headers must be complete within ``header_timeout`` seconds
  of the connection being made (or of the first byte of the next request on a kept-alive
  connection);
- **body timeout**: while a request body is being received, the client may pause at most
  ``body_timeout`` seconds (the server pausing reading because the application is slower
  does not count);
- **connection cap**: at most ``max_connections`` connections per process. A new
  connection over the cap closes the oldest one still waiting for its request (slow or idle
  clients make room first); when every connection is busy with a request, the newcomer is
  refused with 503.

Every limit hit is logged (``dicomveil.web.limits``), at most one line per limit and 10 s
with the number of hits. A connection's limits are checked once a second.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["ConnectionGuard", "GuardLimits", "auto_max_connections", "guard"]

log = logging.getLogger("dicomveil.web.limits")

_SWEEP_SECONDS: Final = 1.0
_LOG_EVERY: Final = 10.0
_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n"
    b"content-length: 28\r\nconnection: close\r\n\r\ntoo many connections, retry\n"
)


def auto_max_connections() -> int:
    """Half the process's file descriptor limit (the rest: spools, databases, engines)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(16, int(soft) // 2)


@dataclass(frozen=True, slots=True)
class GuardLimits:
    """The limits of :class:`ConnectionGuard` (seconds; ``max_connections`` 0: automatic)."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 0


@dataclass(slots=True)
class _Connection:
    transport: asyncio.Transport
    waiting_since: float | None
    last_data: float
    protocol: Any = field(repr=False)


def _waiting(protocol: Any) -> bool:
    """No request in progress: waiting for the headers of the next one (or idle)."""
    cycle = getattr(protocol, "cycle", None)
    return cycle is None or bool(cycle.response_complete)


def _receiving_body(protocol: Any) -> bool:
    cycle = getattr(protocol, "cycle", None)
    if cycle is None or cycle.response_complete or not cycle.more_body:
        return False
    flow = getattr(protocol, "flow", None)
    return not (flow is not None and getattr(flow, "read_paused", False))


class _LimitLog:
    """One log line per limit and :data:`_LOG_EVERY` seconds, with the number of hits."""

    def __init__(self) -> None:
        self._hits: dict[str, int] = {}
        self._logged: dict[str, float] = {}

    def hit(self, limit: str, now: float) -> None:
        self._hits[limit] = self._hits.get(limit, 0) + 1
        if now - self._logged.get(limit, -_LOG_EVERY) >= _LOG_EVERY:
            log.warning("limit hit: %s (%d time(s) since the last line)", limit, self._hits[limit])
            self._hits[limit] = 0
            self._logged[limit] = now


class ConnectionGuard:
    """The connections of one server process and their limits (see the module)."""

    def __init__(self, limits: GuardLimits | None = None) -> None:
        self.limits = limits or GuardLimits()
        self._connections: dict[int, _Connection] = {}
        self._log = _LimitLog()
        self._sweeping = False

    def configure(self, limits: GuardLimits) -> None:
        """Use ``limits`` from now on."""
        self.limits = limits

    @property
    def cap(self) -> int:
        """Connections allowed at once."""
        return self.limits.max_connections or auto_max_connections()

    def __len__(self) -> int:
        return len(self._connections)

    def admit(self, protocol: Any, transport: asyncio.Transport) -> None:
        """A connection was made: make room for it, or refuse it."""
        now = time.monotonic()
        if len(self._connections) >= self.cap and not self._evict_one(now):
            self._log.hit("max_connections (new connection refused)", now)
            if not transport.is_closing():
                transport.write(_BUSY)
                transport.close()
            return
        self._connections[id(protocol)] = _Connection(transport, now, now, protocol)
        if not self._sweeping:
            self._sweeping = True
            asyncio.get_running_loop().call_later(_SWEEP_SECONDS, self._sweep)

    def _evict_one(self, now: float) -> bool:
        for key, connection in self._connections.items():  # oldest first
            if _waiting(connection.protocol):
                self._log.hit("max_connections (oldest waiting connection closed)", now)
                self._close(key)
                return True
        return False

    def release(self, protocol: Any) -> None:
        """A connection was lost."""
        self._connections.pop(id(protocol), None)

    def before_data(self, protocol: Any) -> None:
        """Bytes arrived (before the protocol parses them)."""
        connection = self._connections.get(id(protocol))
        if connection is None:
            return
        now = time.monotonic()
        connection.last_data = now
        if connection.waiting_since is None and _waiting(protocol):
            connection.waiting_since = now  # the first byte of the next request

    def after_data(self, protocol: Any) -> None:
        """Bytes were parsed: a request whose headers are complete stops the header clock."""
        connection = self._connections.get(id(protocol))
        if connection is not None and not _waiting(protocol):
            connection.waiting_since = None

    def _close(self, key: int) -> None:
        connection = self._connections.pop(key)
        if not connection.transport.is_closing():
            connection.transport.close()

    def _sweep(self) -> None:
        now = time.monotonic()
        limits = self.limits
        for key, connection in list(self._connections.items()):
            protocol = connection.protocol
            if connection.transport.is_closing():
                continue
            if _waiting(protocol):
                since = connection.waiting_since
                if since is not None and now - since > limits.header_timeout:
                    self._log.hit("header_timeout", now)
                    self._close(key)
            elif _receiving_body(protocol) and now - connection.last_data > limits.body_timeout:
                self._log.hit("body_timeout", now)
                self._close(key)
        if self._connections:
            asyncio.get_running_loop().call_later(_SWEEP_SECONDS, self._sweep)
        else:
            self._sweeping = False


guard: Final = ConnectionGuard()
"""The guard of this process (configured by :func:`dicomveil.web.app.create_app`)."""
