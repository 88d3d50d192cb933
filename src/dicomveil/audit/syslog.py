"""Live forwarding of audit entries to a syslog collector: RFC 5424 over TCP or TLS.

Every entry the audit log writes is also sent, as :func:`~dicomveil.audit.export.to_syslog`
formats it, to the collector named by ``DICOMVEIL_AUDIT_SYSLOG``:

- ``tcp://HOST:PORT``: RFC 6587 octet-counted framing (``LEN SP MSG``) over plain TCP;
- ``tls://HOST:PORT``: the same framing over TLS (RFC 5425, port 6514 by convention); the
  collector's certificate is checked against the system's CAs, or against
  ``DICOMVEIL_AUDIT_SYSLOG_CA`` (a PEM file) when set, and its host name is checked.

The file (or database) chain stays the record: forwarding is in addition to it. Entries are
queued and sent by one background thread, so a slow or absent collector never slows a request
down or makes it fail. The queue holds :data:`QUEUE_LIMIT` entries; while the collector is
unreachable the sender retries every :data:`RETRY_SECONDS` and keeps the oldest entries;
entries that do not fit are counted and a ``dicomveil.audit.syslog`` warning says how many
(the chain still has them: ``dicomveil audit export`` replays them). At exit, a process waits
up to :data:`FLUSH_SECONDS` for the queue to drain, so short CLI commands forward too.
"""

from __future__ import annotations

import atexit
import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from dicomveil.audit.entry import AuditEntry
from dicomveil.audit.export import to_syslog
from dicomveil.errors import ConfigError

__all__ = ["ENV_CA", "ENV_TARGET", "SyslogForwarder", "SyslogTarget", "forwarder_from_env"]

ENV_TARGET: Final = "DICOMVEIL_AUDIT_SYSLOG"
ENV_CA: Final = "DICOMVEIL_AUDIT_SYSLOG_CA"
QUEUE_LIMIT: Final = 10_000
RETRY_SECONDS: Final = 2.0
FLUSH_SECONDS: Final = 5.0
CONNECT_SECONDS: Final = 5.0

log = logging.getLogger("dicomveil.audit.syslog")


@dataclass(frozen=True, slots=True)
class SyslogTarget:
    """Where entries go: host, port, whether over TLS, and the CA file that signs it."""

    host: str
    port: int
    tls: bool
    ca_file: str = ""

    @classmethod
    def parse(cls, url: str, ca_file: str = "") -> SyslogTarget:
        """Parse ``tcp://HOST:PORT`` or ``tls://HOST:PORT``.

        Raises
        ------
        ConfigError
            Another scheme, no host or no port.
        """
        parts = urlsplit(url.strip())
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("tcp", "tls") or not parts.hostname or port is None:
            raise ConfigError(f"{ENV_TARGET} is tcp://HOST:PORT or tls://HOST:PORT")
        return cls(parts.hostname, port, parts.scheme == "tls", ca_file)

    def __str__(self) -> str:
        return f"{'tls' if self.tls else 'tcp'}://{self.host}:{self.port}"


def frame(message: str) -> bytes:
    """RFC 6587 octet counting: the message's length in bytes, a space, the message."""
    data = message.encode("utf-8")
    return str(len(data)).encode("ascii") + b" " + data


class SyslogForwarder:
    """Send audit entries to one collector from a background thread (see the module)."""

    def __init__(self, target: SyslogTarget, *, hostname: str | None = None) -> None:
        self.target = target
        self.hostname = hostname
        self.dropped = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(QUEUE_LIMIT)
        self._context = self._tls_context() if target.tls else None
        self._closed = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="dicomveil-audit-syslog", daemon=True
        )
        self._thread.start()
        atexit.register(self.close)

    def _tls_context(self) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=self.target.ca_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{ENV_CA}: cannot read the CA file ({type(exc).__name__})") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def send(self, entries: Iterable[AuditEntry]) -> None:
        """Queue ``entries`` (never blocks; what does not fit is counted as dropped)."""
        for entry in entries:
            try:
                self._queue.put_nowait(frame(to_syslog(entry, hostname=self.hostname)))
            except queue.Full:
                self.dropped += 1
                if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                    log.warning(
                        "audit forwarding to %s is behind: %d entries not forwarded "
                        "(still in the audit log)",
                        self.target,
                        self.dropped,
                    )

    def flush(self, timeout: float = FLUSH_SECONDS) -> bool:
        """Wait until every queued entry is sent; return whether that happened in time."""
        end = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < end:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def close(self) -> None:
        """Flush (up to :data:`FLUSH_SECONDS`), then stop the sender."""
        if self._closed.is_set():
            return
        self.flush()
        self._closed.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout=1.0)

    # -- the sender thread -------------------------------------------------------------------

    def _connect(self) -> socket.socket:
        raw = socket.create_connection(
            (self.target.host, self.target.port), timeout=CONNECT_SECONDS
        )
        if self._context is None:
            return raw
        try:
            return self._context.wrap_socket(raw, server_hostname=self.target.host)
        except BaseException:
            raw.close()
            raise

    def _run(self) -> None:
        connection: socket.socket | None = None
        pending: bytes | None = None
        failures = 0
        while True:
            if pending is None:
                pending = self._queue.get()
                if pending is None:
                    self._queue.task_done()
                    break
            try:
                if connection is None:
                    connection = self._connect()
                connection.sendall(pending)
            except (OSError, ssl.SSLError) as exc:
                if connection is not None:
                    connection.close()
                    connection = None
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning(
                        "audit forwarding to %s failed (%s); retrying",
                        self.target,
                        type(exc).__name__,
                    )
                if self._closed.wait(RETRY_SECONDS):
                    self._queue.task_done()
                    break
                continue
            failures = 0
            pending = None
            self._queue.task_done()
        if connection is not None:
            connection.close()


def forwarder_from_env(environ: Mapping[str, str]) -> SyslogForwarder | None:
    """The forwarder ``DICOMVEIL_AUDIT_SYSLOG`` names (one per target and process), or ``None``.

    Raises
    ------
    ConfigError
        The variable is set to something else than ``tcp://`` or ``tls://HOST:PORT``.
    """
    url = environ.get(ENV_TARGET, "").strip()
    if not url:
        return None
    target = SyslogTarget.parse(url, environ.get(ENV_CA, "").strip())
    with _LOCK:
        found = _FORWARDERS.get(target)
        if found is None:
            found = _FORWARDERS[target] = SyslogForwarder(target)
        return found


_LOCK = threading.Lock()
_FORWARDERS: dict[SyslogTarget, SyslogForwarder] = {}
