"""The threads that drain the routing queue: claim a job, send, record, audit.

Each thread claims the most urgent due job (STAT, URGENT, ROUTINE; oldest first) under a
lease, hands its sender a :class:`~.sender.Delivery`, and ends the attempt:

- success: the job is ``done``; audited ``forward.study`` with outcome ``success``;
- failure: the job is queued again after an exponential, jittered backoff
  (:class:`~dicomveil.pipeline.batch_upload.RetryPolicy`), or dead-lettered once it has
  failed ``max_attempts`` times; audited with outcome ``failure`` and the value-free reason.

Audit details and log lines hold the job id, rule, action, destination label, pseudonymous
study UID and counts: no attribute value, no response body, no exception message.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from dicomveil.audit import AuditLog
from dicomveil.audit.entry import AuditEvent
from dicomveil.errors import DicomveilError
from dicomveil.forward.queue import ForwardQueue, Job
from dicomveil.forward.sender import Delivery, ForwardFailed, Sender
from dicomveil.forward.settings import RoutingSettings
from dicomveil.pipeline.batch_upload import RetryPolicy

__all__ = ["FORWARD_EVENT", "ForwardWorker"]

FORWARD_EVENT: Final = "forward.study"
_log = logging.getLogger(__name__)


class ForwardWorker:
    """Drains the queue on ``settings.workers`` threads (see the module docstring).

    Parameters
    ----------
    queue
        The routing database.
    senders
        The sender of each rule, by rule name.
    read
        Returns an archived object's bytes by storage key.
    settings
        Attempts, backoff, lease.
    audit
        Where each attempt is recorded (``None``: not audited, for tools and tests).
    clock
        Seconds since the epoch.
    """

    def __init__(
        self,
        queue: ForwardQueue,
        senders: Mapping[str, Sender],
        read: Callable[[str], bytes],
        settings: RoutingSettings,
        audit: AuditLog | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queue, self._senders, self._read = queue, senders, read
        self._settings, self._audit, self._clock = settings, audit, clock
        self.owner = f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._retry = RetryPolicy(
            retries=settings.max_attempts - 1,
            initial=settings.backoff_initial,
            maximum=settings.backoff_max,
        )
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the threads (once)."""
        if self._threads:
            return
        self._stop.clear()
        for number in range(self._settings.workers):
            thread = threading.Thread(
                target=self._loop, name=f"dicomveil-forward-{number}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        """Tell idle threads that jobs may be due."""
        with self._wake:
            self._wake.notify_all()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the threads after their current job (or let its lease expire)."""
        self._stop.set()
        self.wake()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.run_once() is not None
            except DicomveilError as exc:  # the queue database is unusable right now
                _log.warning("routing: queue unavailable (%s)", type(exc).__name__)
                busy = False
            if not busy:
                with self._wake:
                    self._wake.wait(0.5)

    def run_once(self) -> Job | None:
        """Claim one due job and attempt it; return it (``None``: nothing was due)."""
        job = self._queue.claim(self.owner, self._clock(), self._settings.lease)
        if job is None:
            return None
        sender = self._senders.get(job.rule)
        if sender is None:
            self._failed(job, "rule no longer configured", 0, 0)
            return job
        scope = sender.scope(job)
        pending, covered = self._queue.pending(job, scope)
        count = [0]
        renewed = [self._clock()]
        lock = threading.Lock()

        def sent(uids: Sequence[str]) -> None:  # senders may call it from several threads
            now = self._clock()
            self._queue.mark_sent(job.id, scope, uids, now)
            with lock:
                count[0] += len(uids)
                renew = now - renewed[0] > self._settings.lease / 4
                if renew:
                    renewed[0] = now
            if renew:
                self._queue.renew(job.id, self.owner, now + self._settings.lease)

        def remember_batch(batch_id: str) -> None:
            self._queue.set_batch_id(job.id, batch_id)

        delivery = Delivery(job, pending, covered, self._read, sent, remember_batch)
        try:
            sender.send(delivery)
        except ForwardFailed as exc:
            self._failed(job, exc.reason, len(covered), count[0])
        except DicomveilError as exc:
            self._failed(job, type(exc).__name__, len(covered), count[0])
        except Exception as exc:  # noqa: BLE001 - a sender bug must not kill the thread
            self._failed(job, f"unexpected {type(exc).__name__}", len(covered), count[0])
        else:
            if self._queue.finish(job, self.owner, len(covered), self._clock()):
                self._record(job, "success", len(covered), count[0], None, "done")
                _log.info(
                    "routing: job %d (%s) sent %d of %d instance(s) of study %s to %s",
                    job.id, job.rule, count[0], len(covered), job.study_uid, job.target,
                )  # fmt: skip
        return job

    def _failed(self, job: Job, reason: str, total: int, sent: int) -> None:
        attempts = job.attempts + 1
        now = self._clock()
        retry_at = None
        if attempts < self._settings.max_attempts:
            retry_at = now + self._retry.delay(job.attempts)
        if not self._queue.fail(job, self.owner, reason, now, total=total, retry_at=retry_at):
            return
        state = "dead" if retry_at is None else "queued"
        self._record(job, "failure", total, sent, reason, state)
        _log.warning(
            "routing: job %d (%s) attempt %d failed: %s; %s",
            job.id, job.rule, attempts, reason,
            "dead-lettered" if retry_at is None else f"retry in {retry_at - now:.1f} s",
        )  # fmt: skip

    def _record(
        self, job: Job, outcome: str, total: int, sent: int, reason: str | None, state: str
    ) -> None:
        if self._audit is None:
            return
        details = {
            "job_id": job.id,
            "rule": job.rule,
            "action": job.action,
            "destination": job.target,
            "pseudo_study_uid": job.study_uid,
            "round": job.round,
            "instances": total,
            "sent": sent,
            "attempt": job.attempts + 1,
            "state": state,
        }
        if reason is not None:
            details["error"] = reason
        event = AuditEvent(
            FORWARD_EVENT,
            f"routing:{job.rule}",
            "success" if outcome == "success" else "failure",
            details,
        )
        try:
            self._audit.append(event)
        except DicomveilError as exc:
            _log.error("routing: audit entry not written (%s)", type(exc).__name__)
