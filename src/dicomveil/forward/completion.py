"""Study completion: a study is complete after N quiet seconds, then its rules fire.

DICOM has no "end of study" message: a modality or PACS sends instances over one or more
associations and simply stops. Like CTP's and Orthanc's routers, dicomveil waits until a
(study, source) pair has been quiet for ``completion_timeout`` seconds (per source: the
calling AE title, or the entry such as ``stow``), then matches the rules against what arrived
and queues one forward per matching rule.

Rounds: instances arriving after completion open a new round of the same (study, source);
when it goes quiet, the rules are matched again and new forwards are queued. What each
action sends in a later round:

- ``cstore`` and ``stow``: only what the destination has not acknowledged yet (sent records
  are kept per destination by SOP Instance UID), i.e. the new instances;
- ``batch``: a new, complete batch of the study (a batch is a self-contained unit with its
  manifest; a reader never has to merge batches);
- ``webhook``: one call per round, with the round number and the counts.

On-arrival rules (``send = "on-arrival"``, the default of ``cstore`` and ``stow``) do not
wait: the forward is created with the first instance that makes the rule match (matching
is monotone, see :meth:`~.settings.Rule.matches`) and sends while the study arrives;
completion is then only its commit point (the forward ends once the round is closed and
every instance acknowledged). A late arrival opens a new round as above, whose on-arrival
forward again starts at once and sends only what its destination lacks.

Arrival times are written to the queue database before the ingest call that stored the
instances returns (the listener is called after the archive write is durable), so a restart
finds every open round and completes it on time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from dicomveil.forward.queue import Arrival, DueStudy, ForwardQueue, NewJob
from dicomveil.forward.settings import Rank, RoutingSettings

__all__ = ["CompletionTracker", "OriginLike", "StoredLike", "source_of"]

_log = logging.getLogger(__name__)


class OriginLike(Protocol):
    """What routing reads of :class:`dicomveil.pipeline.ingest.Origin`."""

    @property
    def entry(self) -> str: ...

    @property
    def calling_ae(self) -> str | None: ...


class StoredLike(Protocol):
    """What routing reads of :class:`dicomveil.pipeline.events.InstanceStored`."""

    @property
    def study_uid(self) -> str: ...

    @property
    def series_uid(self) -> str: ...

    @property
    def sop_instance_uid(self) -> str: ...

    @property
    def sop_class_uid(self) -> str: ...

    @property
    def modality(self) -> str | None: ...

    @property
    def storage_key(self) -> str: ...

    @property
    def origin(self) -> OriginLike: ...

    @property
    def attributes(self) -> Mapping[str, str]: ...


def _matchable(event: StoredLike) -> dict[str, str]:
    """The values rules match on: the de-identified attributes, the entry and calling AE."""
    values = dict(event.attributes)
    values["source"] = event.origin.entry
    if event.origin.calling_ae:
        values["calling_ae"] = event.origin.calling_ae
    return values


def source_of(origin: OriginLike) -> str:
    """Return the source an instance came from: its calling AE title, else its entry."""
    return origin.calling_ae or origin.entry


class CompletionTracker:
    """Records arrivals and turns quiet (study, source) rounds into forwards.

    Parameters
    ----------
    queue
        The routing database.
    settings
        Rules and quiet times.
    clock
        Seconds since the epoch (injected in tests).
    """

    def __init__(
        self,
        queue: ForwardQueue,
        settings: RoutingSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queue, self._settings, self._clock = queue, settings, clock
        self._streams = any(rule.on_arrival for rule in settings.rules)
        self._observers: list[Callable[[DueStudy, list[int]], None]] = []

    def observe(self, observer: Callable[[DueStudy, list[int]], None]) -> None:
        """Call ``observer(due, job_ids)`` after each round completes (events); it must
        not raise (what it raises is logged and dropped)."""
        self._observers.append(observer)

    def record(self, events: Sequence[StoredLike]) -> bool:
        """Record stored instances (the ingest listener's work; raises QueueError); create
        or wake on-arrival forwards. Returns whether a forward was created or woken."""
        arrivals = [
            Arrival(
                study_uid=e.study_uid,
                source=source_of(e.origin),
                sop_instance_uid=e.sop_instance_uid,
                series_uid=e.series_uid,
                sop_class_uid=e.sop_class_uid,
                storage_key=e.storage_key,
                modality=e.modality,
                attributes=_matchable(e),
            )
            for e in events
        ]
        streaming = self.on_arrival_jobs if self._streams else None
        return self._queue.record_arrivals(arrivals, self._clock(), streaming)

    def sweep(self) -> list[int]:
        """Complete every round quiet long enough; return the ids of its jobs (created at
        completion, or on arrival and now free to end)."""
        now = self._clock()
        created: list[int] = []
        for due in self._queue.open_rounds():
            if now - due.last_at < self._settings.quiet_seconds(due.source):
                continue
            jobs = self._queue.complete(due, self.jobs_for(due), now)
            created.extend(jobs)
            for observer in self._observers:
                try:
                    observer(due, jobs)
                except Exception as exc:  # noqa: BLE001 - an observer must not stop the sweep
                    _log.error("routing: completion observer failed (%s)", type(exc).__name__)
            _log.info(
                "routing: study %s round %d complete (%d instances), %d forward(s) queued",
                due.study_uid, due.round, due.instances, len(jobs),
            )  # fmt: skip
        return created

    def jobs_for(self, due: DueStudy) -> list[NewJob]:
        """Return the forwards the rules ask for, for one completed round (on-arrival ones
        included: the queue creates only those the round lacks)."""
        return self._matching(due.attributes, on_arrival_only=False)

    def on_arrival_jobs(self, attributes: Mapping[str, frozenset[str]]) -> list[NewJob]:
        """Return the on-arrival forwards the rules ask for, given a study's values so far."""
        return self._matching(attributes, on_arrival_only=True)

    def _matching(
        self, attributes: Mapping[str, frozenset[str]], *, on_arrival_only: bool
    ) -> list[NewJob]:
        return [
            NewJob(
                rule=rule.name,
                action=rule.target.action,
                target=rule.target.label,
                rank=Rank.of(rule.priority),
            )
            for rule in self._settings.rules
            if (rule.on_arrival or not on_arrival_only) and rule.matches(attributes)
        ]

    def next_due(self) -> float | None:
        """Seconds until the next open round may complete (``None``: none open)."""
        now = self._clock()
        waits = [
            due.last_at + self._settings.quiet_seconds(due.source) - now
            for due in self._queue.open_rounds()
        ]
        return max(0.0, min(waits)) if waits else None
