"""Events as a service: the outbox writers (ingest listener, completion hook) and the sender.

Usage (what the gateway and the DICOM node do)::

    events = attach_events(runtime, forwarding)   # None without [events] endpoints
    ...
    events.stop()

What each type's ``data`` holds (pseudonymous ids and counts, never an attribute value of
the originals):

- ``org.dicomveil.instance.stored``: ``study_uid``, ``series_uid``, ``sop_instance_uid``,
  ``sop_class_uid``, ``modality``, ``entry`` (``stow``, ``dimse``, ``upload``...);
- ``org.dicomveil.study.complete``: ``study_uid``, ``source``, ``round``, ``instances``,
  ``modalities``, ``forwards`` (jobs queued);
- ``org.dicomveil.batch.shipped``: ``batch_id``, ``instances``, ``studies``;
- ``org.dicomveil.file.quarantined``: ``sha256`` (of the original), ``reason`` (a failure
  kind), ``entry``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dicomveil.events import cloudevents as ce
from dicomveil.events.outbox import Outbox
from dicomveil.events.sender import EventSender
from dicomveil.events.settings import EventSettings

if TYPE_CHECKING:
    from dicomveil.forward.queue import DueStudy
    from dicomveil.pipeline.events import InstanceStored

__all__ = ["Events", "attach_events", "source_of"]

log = logging.getLogger(__name__)


def source_of(organization: str) -> str:
    """The CloudEvents ``source``: ``/dicomveil/<organization>`` (or ``/dicomveil``)."""
    return f"/dicomveil/{organization}" if organization else "/dicomveil"


class Events:
    """Record events in the outbox and deliver them (see the module's documentation)."""

    def __init__(self, settings: EventSettings, source: str) -> None:
        self.settings, self.source = settings, source
        self.outbox = Outbox(settings.database_url)
        self.sender = EventSender(self.outbox, settings)

    @classmethod
    def open(cls, config: Path | None, *, home: Path, organization: str = "") -> Events:
        """Read ``[events]`` and open the outbox (raises ConfigError)."""
        return cls(EventSettings.load(config, home=home), source_of(organization))

    def publish(self, items: Sequence[tuple[str, str, Mapping[str, Any]]]) -> None:
        """Queue ``(type, subject, data)`` events for every endpoint (types filtered)."""
        chosen = [i for i in items if i[0] in self.settings.types]
        if not chosen or not self.settings.enabled:
            return
        rows = []
        for kind, subject, data in chosen:
            event = ce.envelope(kind, subject, data, source=self.source)
            rows.append((str(event["id"]), kind, ce.serialize(event)))
        self.outbox.add(rows, self.settings.endpoints)
        self.sender.wake()

    def on_stored(self, events: Sequence[InstanceStored]) -> None:
        """The ingest listener (never raises: an event lost is logged, value-free)."""
        items = [
            (
                ce.INSTANCE_STORED,
                e.study_uid,
                {
                    "study_uid": e.study_uid,
                    "series_uid": e.series_uid,
                    "sop_instance_uid": e.sop_instance_uid,
                    "sop_class_uid": e.sop_class_uid,
                    "modality": e.modality,
                    "entry": e.origin.entry,
                },
            )
            for e in events
        ]
        self._safely(items)

    def on_study_complete(self, due: DueStudy, jobs: Sequence[int]) -> None:
        """The completion sweep's hook: one event per completed round."""
        modalities = sorted(due.attributes.get("Modality", frozenset()))
        data = {
            "study_uid": due.study_uid, "source": due.source, "round": due.round,
            "instances": due.instances, "modalities": modalities, "forwards": len(jobs),
        }  # fmt: skip
        self._safely([(ce.STUDY_COMPLETE, due.study_uid, data)])

    def on_quarantined(self, items: Sequence[tuple[str, str]], entry: str = "upload") -> None:
        """``(sha256 of the original, failure kind)`` of each input kept in the quarantine."""
        events = [
            (ce.FILE_QUARANTINED, sha256, {"sha256": sha256, "reason": kind, "entry": entry})
            for sha256, kind in items
        ]
        self._safely(events)

    def on_batch_shipped(self, batch_id: str, instances: int, studies: int) -> None:
        """A batch went out complete (its manifest written last)."""
        data = {"batch_id": batch_id, "instances": instances, "studies": studies}
        self._safely([(ce.BATCH_SHIPPED, batch_id, data)])

    def _safely(self, items: Sequence[tuple[str, str, Mapping[str, Any]]]) -> None:
        try:
            self.publish(items)
        except Exception as exc:  # noqa: BLE001 - must not undo an ingest or a sweep
            log.error("events: %d event(s) not recorded (%s)", len(items), type(exc).__name__)

    def start(self) -> None:
        """Start delivering."""
        if self.settings.enabled:
            self.sender.start()

    def stop(self) -> None:
        """Stop delivering and close the outbox."""
        self.sender.stop()
        self.outbox.close()


def attach_events(runtime: Any, forwarding: Any = None) -> Events | None:
    """Record and deliver ``runtime``'s events as its ``--config`` ``[events]`` says.

    Subscribes to the ingest service and, when routing runs (``forwarding``), to study
    completion. ``None`` (nothing opened) without endpoints.

    Raises
    ------
    ConfigError
        A bad ``[events]`` table, or endpoints without a secret.
    """
    settings = runtime.settings
    config = getattr(settings, "config_file", None)
    home = Path(settings.home)
    shared = getattr(settings, "database_url", None)
    loaded = EventSettings.load(config, home=home, shared=shared)
    if not loaded.enabled:
        return None
    events = Events(loaded, source_of(str(getattr(settings, "organization", "") or "")))
    runtime.ingest.subscribe(events.on_stored)
    if forwarding is not None:
        forwarding.on_complete(events.on_study_complete)
    events.start()
    return events
