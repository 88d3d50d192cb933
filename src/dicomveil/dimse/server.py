"""dicomveil as a DICOM node: the pynetdicom Application Entity, started and stopped.

:class:`DimseNode` listens with Verification, Storage (every storage SOP class) and
Query/Retrieve (Patient and Study Root C-FIND, C-GET, C-MOVE) SCPs, all handled by
:class:`~dicomveil.dimse.handlers.Handlers` on an opened :class:`~dicomveil.runtime.Runtime`.
:func:`run_node` is the process entry point of ``dicomveil scp`` (and of the DIMSE side of
``dicomveil serve --dimse-port``): it makes the process-wide pynetdicom settings, serves until
SIGTERM or SIGINT, then stops gracefully (no new associations; those in progress get
:data:`GRACE_SECONDS` to finish, then are aborted).

The ``dicomveil.cli`` edge imports this module lazily, only to start the node.
"""

from __future__ import annotations

import logging
import signal
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

from dicomveil.dimse import fastpath
from dicomveil.dimse.contexts import add_supported
from dicomveil.dimse.handlers import Handlers
from dicomveil.dimse.logs import quiet_pynetdicom
from dicomveil.dimse.settings import DimseSettings, load_dimse_settings

if TYPE_CHECKING:
    from dicomveil.runtime import Runtime

__all__ = [
    "GRACE_SECONDS",
    "DimseNode",
    "load_settings",
    "receive_into",
    "run_node",
    "start_node",
]

log = logging.getLogger("dicomveil.dimse")

GRACE_SECONDS: Final = 10.0
"""How long a stopping node lets associations in progress finish."""


def load_settings(config: Path | None, **overrides: Any) -> DimseSettings:
    """The ``[dimse]`` settings of ``config`` with the command line's ``overrides`` (what
    ``dicomveil scp`` and ``serve --dimse-port`` call: this module is the ``cli`` edge's one
    way into the node, see the import contract in ``pyproject.toml``).

    Raises
    ------
    ConfigError
        Malformed settings.
    """
    return load_dimse_settings(config, **overrides)


def receive_into(folder: Path) -> None:
    """Make pynetdicom write received C-STORE datasets, as received, to files in ``folder``.

    Process-wide (pynetdicom's ``STORE_RECV_CHUNKED_DATASET`` and the temporary folder its
    receiving files go to), so only a process entry point calls it: ``folder`` is the
    runtime's private staging folder, which a later start sweeps if this process dies (a
    partly received instance holds PHI).
    """
    from pynetdicom import _config

    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _config.STORE_RECV_CHUNKED_DATASET = True
    tempfile.tempdir = str(folder)


class DimseNode:
    """The DICOM node on an opened runtime.

    Parameters
    ----------
    runtime:
        The opened resources (store, index, audit log, ingest service, staging folder).
    settings:
        The ``[dimse]`` settings (AE title, address, access, limits, TLS, destinations).
    """

    def __init__(self, runtime: Runtime, settings: DimseSettings) -> None:
        from pynetdicom import AE

        self.settings = settings
        self.handlers = Handlers(runtime, settings)
        ae = AE(ae_title=settings.ae_title)
        ae.maximum_associations = settings.max_associations
        ae.maximum_pdu_size = settings.max_pdu_size
        ae.acse_timeout = settings.acse_timeout
        ae.dimse_timeout = settings.dimse_timeout
        ae.network_timeout = settings.network_timeout
        add_supported(ae)
        fastpath.install()  # pre-encoded C-FIND answers, cheap command sets (when safe)
        self.ae = ae
        self._server: Any = None

    @property
    def address(self) -> tuple[str, int]:
        """Where the node listens (the real port when started with port 0)."""
        if self._server is None:
            return self.settings.host, self.settings.port
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Listen, serving associations on threads (returns at once).

        Raises
        ------
        ConfigError
            The TLS files are unusable.
        OSError
            The address cannot be bound.
        """
        ssl_context = None
        if self.settings.tls is not None:
            from dicomveil.dimse.tls import server_context

            ssl_context = server_context(self.settings.tls)
        if self.settings.any_caller:
            log.warning(
                "[dimse] allowed_ae_titles is empty: any calling AE title is accepted "
                "(list the modalities and workstations that may call)"
            )
        self._server = self.ae.start_server(
            (self.settings.host, self.settings.port),
            block=False,
            ae_title=self.settings.ae_title,
            ssl_context=ssl_context,
            evt_handlers=self.handlers.bindings(),
        )
        host, port = self.address
        log.info("DICOM node %s listening on %s:%d", self.settings.ae_title, host, port)

    def stop(self, grace: float = GRACE_SECONDS) -> None:
        """Stop listening; wait up to ``grace`` seconds for associations, then abort them."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()  # no new associations (the listening socket is closed)
        deadline = time.monotonic() + grace
        while self._established() and time.monotonic() < deadline:
            time.sleep(0.05)
        for assoc in self.ae.active_associations:  # late, or never sent an A-ASSOCIATE-RQ
            assoc.abort()
        self.handlers.close()

    def _established(self) -> list[Any]:
        return [a for a in self.ae.active_associations if a.is_established]

    def __enter__(self) -> DimseNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_node(runtime: Runtime, settings: DimseSettings) -> DimseNode:
    """Start a node in this process, beside other work (``serve --dimse-port``): makes the
    process-wide pynetdicom settings (:func:`receive_into` the runtime's staging folder,
    :func:`~dicomveil.dimse.logs.quiet_pynetdicom`), then listens on threads. The caller
    stops it with :meth:`DimseNode.stop`."""
    quiet_pynetdicom()
    receive_into(Path(runtime.staging) / "received")
    node = DimseNode(runtime, settings)
    node.start()
    return node


def run_node(runtime: Runtime, settings: DimseSettings) -> None:
    """Serve ``settings`` on ``runtime`` until SIGTERM or SIGINT (the ``scp`` entry point).

    Must run in the main thread (it installs the signal handlers).
    """
    stopping = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        node = start_node(runtime, settings)
        try:
            while not stopping.wait(0.5):
                pass
            log.info("stopping the DICOM node")
        finally:
            node.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
