"""Group commit: instances arriving at once (tasks of a worker, C-STOREs on several
associations) share one ingest call.

One ingest call has a fixed cost that hardly depends on how many instances it carries: a run
opened and closed in the audit log (on a shared database, under the chain head's row lock,
which every node waits for in turn), one vault transaction, one index transaction with its
parent rows, an ``fsync`` of the archive folder, the look-ups of existing instances. Paid
once per instance it was most of a worker's CPU and database time (19 ms of worker CPU per
64x64 instance called one by one, 2 ms in calls of 10).

:class:`GroupCommit` lets concurrent callers meet: the first to arrive runs the ingest call
for itself and every caller waiting with the same origin (up to ``limit``); callers arriving
meanwhile wait and go together in the next call, run by the first of them. No caller waits
for a timer: a batch is whatever queued up while the previous call ran, and one caller alone
runs alone, at once, in its own thread.

Each caller keeps the guarantees of a call of its own: it returns only after the call that
carried its instance returned (so a C-STORE answer or a message acknowledgement still
follows the instance being stored and recorded), with its own result (one bad file fails
alone); an exception of the call (a database gone) is raised in every caller of that call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from dicomveil.pipeline.ingest import IngestResult, Origin

__all__ = ["BATCH_LIMIT", "GroupCommit", "IngestCall"]

BATCH_LIMIT: Final = 32
"""Most instances in one ingest call (bounds the transaction and the audit run)."""

IngestCall = Callable[[Sequence[Path], "Origin"], "Sequence[IngestResult]"]
"""``IngestService.ingest`` (or the cluster submitter's): files and their origin → results,
one per file, in order."""


@dataclass(eq=False)
class _Waiting:
    """One caller's instance, waiting for a call to carry it."""

    path: Path
    origin: Origin
    woken: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    """Set when this caller is to run the next call (the previous leader handed over)."""
    result: IngestResult | None = None
    error: BaseException | None = None


class GroupCommit:
    """Runs the instances of concurrent callers in shared ingest calls (thread-safe).

    Parameters
    ----------
    limit:
        Most instances per call.
    """

    def __init__(self, limit: int = BATCH_LIMIT) -> None:
        if limit < 1:
            raise ValueError("limit must be 1 or more")
        self.limit = limit
        self._lock = threading.Condition()
        self._waiting: list[_Waiting] = []
        self._running = False
        self._closed = False
        self.calls = 0
        """Ingest calls made (the tests and the benchmark read it)."""

    def ingest(self, call: IngestCall, path: Path, origin: Origin) -> IngestResult:
        """Ingest ``path`` with ``call``, in one call with whatever else is waiting.

        Returns this instance's result.

        Raises
        ------
        Exception
            What the call raised (for every instance of that call).
        RuntimeError
            :meth:`close` was called.
        """
        me = _Waiting(path, origin)
        with self._lock:
            if self._closed:
                raise RuntimeError("the ingest service is stopping")
            self._waiting.append(me)
            leads = not self._running
            self._running = True
        if not leads:
            me.woken.wait()
            if not me.lead:
                return self._outcome(me)
        self._lead(call, me)
        return self._outcome(me)

    def close(self) -> None:
        """Refuse new instances and wait until the calls in progress and queued are done."""
        with self._lock:
            self._closed = True
            self._lock.wait_for(lambda: not self._running)

    def _lead(self, call: IngestCall, me: _Waiting) -> None:
        """Run one call for ``me`` and the callers waiting with its origin; hand over."""
        with self._lock:
            batch = [w for w in self._waiting if w.origin == me.origin][: self.limit]
            if me not in batch:  # more than `limit` of its origin queued ahead of it
                batch = [*batch[:-1], me]
            taken = set(map(id, batch))
            self._waiting = [w for w in self._waiting if id(w) not in taken]
            self.calls += 1
        try:
            results = call([w.path for w in batch], me.origin)
        except BaseException as exc:  # every caller of the batch sees the call's failure
            for waiting in batch:
                waiting.error = exc
        else:
            for waiting, result in zip(batch, results, strict=True):
                waiting.result = result
        with self._lock:
            following = self._waiting[0] if self._waiting else None
            if following is None:
                self._running = False
                self._lock.notify_all()
            else:
                following.lead = True
        for waiting in batch:
            if waiting is not me:
                waiting.woken.set()
        if following is not None:
            following.woken.set()

    @staticmethod
    def _outcome(waiting: _Waiting) -> IngestResult:
        if waiting.error is not None:
            raise waiting.error
        assert waiting.result is not None
        return waiting.result
