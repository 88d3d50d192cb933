"""The threads that drain the routing queue: claim a job, send, record, audit.

Each thread claims the most urgent due job (STAT, URGENT, ROUTINE; oldest first) under a
lease and sends it:

- a streaming sender (C-STORE, STOW-RS) gets a :class:`~.sender.Stream`, fed with what the
  job's scope has not acknowledged; while the job's round is still open (an on-arrival
  forward) the thread keeps the stream, and its associations or HTTP connections, and
  feeds it each instance archived after (it looks again at most every 0.1 s while the
  stream is busy, at once when it is idle and told of an arrival in this process, every
  0.25 s otherwise). When nothing has come for :attr:`ForwardWorker.linger` seconds the
  job is *parked* and the thread is free: the next arrival or the completion makes the job
  due again. While a more urgent job (a higher priority) is due, the thread submits
  nothing more, waits for what is in flight, and gives the job back (due at once, behind
  the urgent one): a STAT study never waits for a ROUTINE one still arriving. The forward
  ends once its round is closed and every instance is acknowledged;
- any other sender (batch, webhook) gets a :class:`~.sender.Delivery`, once the study is
  complete.

An attempt ends:

- success: the job is ``done``; audited ``forward.study`` with outcome ``success``;
- failure: the job is queued again after an exponential, jittered backoff
  (:class:`~dicomveil.pipeline.batch_upload.RetryPolicy`), or dead-lettered once it has
  failed ``max_attempts`` times; audited with outcome ``failure`` and the value-free reason.

Parking, or giving a job back when the worker stops, ends no attempt (nothing audited).
Audit details and log lines hold the job id, rule, action, destination label, pseudonymous
study UID and counts (``sent``: instances acknowledged for this forward, all attempts): no
attribute value, no response body, no exception message.
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
from dicomveil.forward.sender import Delivery, ForwardFailed, Sender, Stream, StreamingSender
from dicomveil.forward.settings import RoutingSettings
from dicomveil.pipeline.batch_upload import RetryPolicy

__all__ = ["FORWARD_EVENT", "ForwardWorker"]

FORWARD_EVENT: Final = "forward.study"
LINGER: Final = 2.0
"""Seconds a streaming job whose study is still open is held with nothing to send."""
_STEP: Final = 0.1
"""Shortest time between two reads of a busy streaming job's pending instances."""
_POLL: Final = 0.25
"""Longest wait of a streaming job between two looks at the queue (other processes)."""
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
        senders: Mapping[str, Sender | StreamingSender],
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
        self._signals: set[threading.Event] = set()
        self._signals_lock = threading.Lock()
        self.linger = LINGER

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
        """Tell idle threads that jobs may be due, and streaming ones to look again."""
        self.nudge()
        with self._wake:
            self._wake.notify_all()

    def nudge(self) -> None:
        """Tell the threads streaming a job that instances may have arrived."""
        with self._signals_lock:
            for signal in self._signals:
                signal.set()

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
            self._failed(job, "rule no longer configured", job.total, job.sent)
        elif isinstance(sender, StreamingSender):
            self._stream(job, sender)
        elif not job.complete:  # only sends complete studies: wait for the completion
            total = self._queue.progress(job.id, self.owner).total
            if not self._queue.park(job, self.owner, total, self._clock()):
                self._queue.release(job, self.owner, self._clock())  # it changed: look again
        else:
            self._deliver(job, sender)
        return job

    def _deliver(self, job: Job, sender: Sender) -> None:
        """One attempt at a job of a sender of complete studies."""
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
        except Exception as exc:  # noqa: BLE001 - a sender bug must not kill the thread
            self._failed(job, _reason(exc), len(covered), job.sent + count[0])
        else:
            self._done(job, len(covered), job.sent + count[0])

    def _stream(self, job: Job, sender: StreamingSender) -> None:
        """One attempt (or one hold, until parked) at a job of a streaming sender."""
        scope = sender.scope(job)
        signal = threading.Event()
        acked = [0]
        renewed = [time.monotonic()]
        lock = threading.Lock()

        def acknowledge(uids: Sequence[str]) -> None:  # from the stream's threads
            self._queue.mark_sent(job.id, scope, uids, self._clock())
            with lock:
                acked[0] += len(uids)
            self._renew(job, renewed, lock)

        stream = sender.open(job, self._read, acknowledge, signal.set)
        with self._signals_lock:
            self._signals.add(signal)
        outcome, total, reason = "failed", job.total, ""
        try:
            outcome, total = self._drive(job, scope, stream, signal, renewed, lock)
        except Exception as exc:  # noqa: BLE001 - a sender bug must not kill the thread
            reason = _reason(exc)
        finally:
            stream.close()  # waits for what is in flight: every acknowledgement recorded
            with self._signals_lock:
                self._signals.discard(signal)
        sent = job.sent + acked[0]
        if outcome == "done":
            self._done(job, total, sent)
        elif outcome == "failed":
            self._failed(job, reason, total, sent)
        elif outcome in ("stopped", "yielded"):  # due again at once: no attempt ended
            self._queue.release(job, self.owner, self._clock())
            _log.debug("routing: job %d %s after %d sent", job.id, outcome, sent)
        else:
            _log.debug("routing: job %d %s after %d sent", job.id, outcome, sent)

    def _drive(
        self,
        job: Job,
        scope: str,
        stream: Stream,
        signal: threading.Event,
        renewed: list[float],
        lock: threading.Lock,
    ) -> tuple[str, int]:
        """Feed ``stream`` until the job is done, parked, lost or stopped; return that and
        the instances covered. Raises ForwardFailed (and queue errors) on failure."""
        submitted: set[str] = set()
        seen, covered = -1, job.total
        looked = quiet_since = time.monotonic()
        urgent_at, urgent = 0.0, False
        while True:
            signal.clear()
            if self._stop.is_set():
                return "stopped", covered
            error = stream.fatal()
            if error is not None:
                raise error
            progress = self._queue.progress(job.id, self.owner)
            if not progress.held:
                return "lost", covered
            busy = stream.busy()  # before the read: if idle, every answer is recorded in it
            if time.monotonic() - urgent_at >= _STEP:
                urgent_at = time.monotonic()
                urgent = self._queue.more_urgent_due(job.rank, self._clock())
            if urgent:  # a more urgent job waits: submit nothing more, give this one back
                if not busy:
                    return "yielded", covered
            elif progress.total != seen or not busy:
                if busy:  # let more arrive: one read of the pending list per step
                    time.sleep(max(0.0, looked + _STEP - time.monotonic()))
                looked = time.monotonic()
                pending, everything = self._queue.pending(job, scope)
                seen, covered = progress.total, len(everything)
                fresh = [x for x in pending if x.sop_instance_uid not in submitted]
                if fresh:
                    submitted.update(x.sop_instance_uid for x in fresh)
                    stream.submit(fresh)
                    quiet_since = time.monotonic()
                    continue
                if not busy:
                    if pending:  # every one submitted and answered, not all stored
                        raise (
                            stream.fatal()
                            or stream.rejected()
                            or ForwardFailed("instances not acknowledged")
                        )
                    if progress.complete:
                        return "done", covered
                    if time.monotonic() - quiet_since >= self.linger:
                        if self._queue.park(job, self.owner, progress.total, self._clock()):
                            return "parked", covered
                        continue  # an arrival or the completion came in between
            self._renew(job, renewed, lock)
            signal.wait(_POLL)

    def _renew(self, job: Job, renewed: list[float], lock: threading.Lock) -> None:
        """Extend the job's lease when a quarter of it has passed."""
        now = time.monotonic()
        with lock:
            due = now - renewed[0] > self._settings.lease / 4
            if due:
                renewed[0] = now
        if due:
            self._queue.renew(job.id, self.owner, self._clock() + self._settings.lease)

    def _done(self, job: Job, total: int, sent: int) -> None:
        if self._queue.finish(job, self.owner, total, self._clock()):
            self._record(job, "success", total, sent, None, "done")
            _log.info(
                "routing: job %d (%s) done: %d of %d instance(s) of study %s sent to %s",
                job.id, job.rule, sent, total, job.study_uid, job.target,
            )  # fmt: skip

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


def _reason(exc: BaseException) -> str:
    """A value-free reason for a failed attempt (never an exception's message)."""
    if isinstance(exc, ForwardFailed):
        return exc.reason
    if isinstance(exc, DicomveilError):
        return type(exc).__name__
    return f"unexpected {type(exc).__name__}"
