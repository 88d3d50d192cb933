"""Routing as a service: the ingest listener, the completion sweep and the queue workers.

Usage (what ``dicomveil serve`` and ``dicomveil scp`` do)::

    forwarding = Forwarding.open(config_path, runtime)
    runtime.ingest.subscribe(forwarding.listener)
    forwarding.start()
    ...
    forwarding.stop()

The listener records arrivals (one small database write per ingest call), creating or
waking the forwards of on-arrival rules and telling the workers; a sweep thread completes
quiet studies, queues the forwards of on-complete rules and lets on-arrival ones end;
worker threads send them. With no ``[[routing.rules]]`` nothing is recorded and no thread
runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from dicomveil.audit import AuditLog
from dicomveil.errors import DicomveilError
from dicomveil.forward.batch import BatchSender
from dicomveil.forward.completion import CompletionTracker, StoredLike
from dicomveil.forward.cstore import CStoreSender
from dicomveil.forward.queue import DueStudy, ForwardQueue
from dicomveil.forward.sender import Sender, StreamingSender
from dicomveil.forward.settings import RoutingSettings, Rule
from dicomveil.forward.stow import StowSender
from dicomveil.forward.webhook import WebhookSender
from dicomveil.forward.worker import ForwardWorker
from dicomveil.ports import BlobStore

__all__ = ["Forwarding", "RuntimeLike", "attach_forwarding", "senders_for"]

_log = logging.getLogger(__name__)
_SWEEP_MAX: float = 0.5
"""Longest wait between two completion sweeps (seconds)."""


class RuntimeLike(Protocol):
    """What routing uses of :class:`dicomveil.runtime.Runtime`."""

    @property
    def settings(self) -> Any: ...  # CoreSettings: ``home``, ``organization``, ``database_url``

    @property
    def store(self) -> BlobStore: ...

    @property
    def audit(self) -> AuditLog: ...


class IngestingRuntime(RuntimeLike, Protocol):
    """A runtime whose ingest service routing listens to."""

    @property
    def ingest(self) -> Any: ...  # IngestService: ``subscribe``


def senders_for(
    rules: Sequence[Rule], settings: RoutingSettings, organization: str = ""
) -> dict[str, Sender | StreamingSender]:
    """Return the sender of each rule, by rule name."""
    senders: dict[str, Sender | StreamingSender] = {}
    for rule in rules:
        target = rule.target
        if target.action == "cstore":
            senders[rule.name] = CStoreSender(target, settings.ae_title, settings.timeout)
        elif target.action == "stow":
            senders[rule.name] = StowSender(target, settings.timeout)
        elif target.action == "webhook":
            senders[rule.name] = WebhookSender(target, settings.timeout)
        else:
            senders[rule.name] = BatchSender(target, organization, settings.timeout)
    return senders


class Forwarding:
    """Routing of arriving and complete studies (see the module docstring)."""

    def __init__(
        self,
        settings: RoutingSettings,
        queue: ForwardQueue,
        tracker: CompletionTracker,
        worker: ForwardWorker,
    ) -> None:
        self.settings, self.queue, self.tracker, self.worker = settings, queue, tracker, worker
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    @classmethod
    def open(
        cls,
        config: Path | None,
        runtime: RuntimeLike,
        *,
        settings: RoutingSettings | None = None,
        clock: Callable[[], float] = time.time,
        senders: Mapping[str, Sender | StreamingSender] | None = None,
    ) -> Forwarding:
        """Read ``[routing]`` from ``config`` and open the queue database.

        Parameters
        ----------
        config
            The settings TOML (``None``: defaults, no rules).
        runtime
            The opened resources: the archive to read from, the audit log, the state folder.
        settings, clock, senders
            Replacements (tests, tools): parsed settings, the time, senders by rule name.

        Raises
        ------
        ConfigError
            Bad ``[routing]`` table or queue URL.
        """
        home = Path(runtime.settings.home)
        shared = getattr(runtime.settings, "database_url", None)
        routing = settings or RoutingSettings.load(config, home=home, database_url=shared)
        queue = ForwardQueue.open(routing.queue_url)
        organization = str(getattr(runtime.settings, "organization", "") or "")
        if senders is None:
            senders = senders_for(routing.rules, routing, organization)
        tracker = CompletionTracker(queue, routing, clock)
        read = runtime.store.get_bytes
        worker = ForwardWorker(queue, senders, read, routing, runtime.audit, clock)
        return cls(routing, queue, tracker, worker)

    @property
    def enabled(self) -> bool:
        """Whether any rule is configured (nothing runs otherwise)."""
        return bool(self.settings.rules)

    @property
    def listener(self) -> Callable[[Sequence[StoredLike]], None]:
        """The ingest listener: records arrivals; never raises (failures are logged)."""
        return self._on_stored

    def _on_stored(self, events: Sequence[StoredLike]) -> None:
        if not self.enabled or not events:
            return
        try:
            if self.tracker.record(events):
                self.worker.wake()  # an on-arrival forward was created or woken
            else:
                self.worker.nudge()  # those streaming look again
        except DicomveilError as exc:
            _log.error("routing: %d arrival(s) not recorded (%s)", len(events), type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 - a listener must not raise into ingest
            _log.error("routing: listener failed (%s)", type(exc).__name__)

    def on_complete(self, observer: Callable[[DueStudy, list[int]], None]) -> None:
        """Call ``observer(due, job_ids)`` after each completed round (study events)."""
        self.tracker.observe(observer)

    def start(self) -> None:
        """Start the completion sweep and the workers (no-op without rules)."""
        if not self.enabled or self._sweeper is not None:
            return
        self._stop.clear()
        self._sweeper = threading.Thread(
            target=self._sweep_loop, name="dicomveil-routing-sweep", daemon=True
        )
        self._sweeper.start()
        self.worker.start()

    def _sweep_loop(self) -> None:
        while not self._stop.is_set():
            wait = _SWEEP_MAX
            try:
                if self.tracker.sweep():
                    self.worker.wake()
                due = self.tracker.next_due()
                if due is not None:
                    wait = min(wait, max(due, 0.02))
            except DicomveilError as exc:
                _log.warning("routing: completion sweep failed (%s)", type(exc).__name__)
            self._stop.wait(wait)

    def stop(self) -> None:
        """Stop the threads and close the queue database."""
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join(30)
            self._sweeper = None
        self.worker.stop()
        self.queue.close()

    def __enter__(self) -> Forwarding:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def attach_forwarding(runtime: IngestingRuntime) -> Forwarding | None:
    """Route what ``runtime``'s ingest service stores, as its configuration file's
    ``[routing]`` table says: listen, complete studies and send, until
    :meth:`Forwarding.stop`. ``None`` (nothing opened, nothing runs) without rules.

    Every process that ingests attaches (the gateway's server processes, the DICOM node):
    they share the queue database, whose leases and once-closed rounds make that safe.

    Raises
    ------
    ConfigError
        Bad ``[routing]`` table or queue URL.
    """
    settings = runtime.settings
    routing = RoutingSettings.load(
        settings.config_file,
        home=Path(settings.home),
        database_url=getattr(settings, "database_url", None),
    )
    if not routing.rules:
        return None
    forwarding = Forwarding.open(settings.config_file, runtime, settings=routing)
    runtime.ingest.subscribe(forwarding.listener)
    forwarding.start()
    return forwarding
