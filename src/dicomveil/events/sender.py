"""Delivering the outbox: POST each due event, signed, retried with backoff, dead after N.

One thread per process (:class:`EventSender`). Each delivery is a ``POST`` of the stored
CloudEvent bytes with ``Content-Type: application/cloudevents+json`` and the
``X-Dicomveil-Signature`` header (:mod:`~dicomveil.events.signing`), signed at send time so
the timestamp is fresh on every attempt. A 2xx answer is success; anything else (or no
answer) is retried after ``backoff_seconds * 2^(attempt-1)`` (capped), and the delivery is
dead after ``max_attempts``. Redirects are not followed. Delivery is at least once: a
receiver de-duplicates by the event's ``id``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from dicomveil import __version__
from dicomveil._optional import require
from dicomveil.events.cloudevents import CONTENT_TYPE
from dicomveil.events.outbox import Outbox, Pending
from dicomveil.events.settings import EventSettings
from dicomveil.events.signing import SIGNATURE_HEADER, sign

__all__ = ["EventSender"]

log = logging.getLogger(__name__)
_IDLE_MAX = 1.0


class EventSender:
    """Drain the outbox in a background thread (see the module's documentation)."""

    def __init__(
        self,
        outbox: Outbox,
        settings: EventSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox, self.settings, self._clock = outbox, settings, clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is not None:
            return
        httpx = require("httpx", "event webhooks", "routing")
        self._client = httpx.Client(timeout=self.settings.timeout, follow_redirects=False)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="dicomveil-events", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look at the outbox now (new events were added)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop the thread (a delivery in flight finishes first)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.settings.timeout + 5)
            self._thread = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def run_once(self) -> int:
        """Deliver what is due now; return how many deliveries were attempted."""
        lease = self.settings.timeout * 2 + 5
        due = self.outbox.claim(self._clock(), lease)
        for item in due:
            if self._stop.is_set():
                break
            self._deliver(item)
        return len(due)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.run_once():
                    continue
                upcoming = self.outbox.next_due()
            except Exception as exc:  # noqa: BLE001 - the database may come back
                log.warning("events: outbox not readable (%s)", type(exc).__name__)
                upcoming = None
            wait = _IDLE_MAX
            if upcoming is not None:
                wait = min(wait, max(upcoming - self._clock(), 0.01))
            self._wake.wait(wait)
            self._wake.clear()

    def _deliver(self, item: Pending) -> None:
        headers = {
            "Content-Type": CONTENT_TYPE,
            "User-Agent": f"dicomveil/{__version__}",
            SIGNATURE_HEADER: sign(list(self.settings.secrets), item.body),
        }
        error = ""
        try:
            answer = self._client.post(item.endpoint, content=item.body, headers=headers)
            if 200 <= answer.status_code < 300:
                self.outbox.delivered(item.id)
                return
            error = f"HTTP {answer.status_code}"
        except Exception as exc:  # noqa: BLE001 - httpx's errors, all retried
            error = type(exc).__name__
        attempts = item.attempts + 1
        if attempts >= self.settings.max_attempts:
            self.outbox.failed(item.id, error, None)
            log.error("events: delivery %d dead after %d attempts (%s)", item.id, attempts, error)
        else:
            retry_at = self._clock() + self.settings.backoff(attempts)
            self.outbox.failed(item.id, error, retry_at)
            log.warning("events: delivery %d failed (%s), retrying", item.id, error)
