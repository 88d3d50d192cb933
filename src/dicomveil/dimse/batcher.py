"""Group commit for C-STORE: instances arriving on several associations at once go through
one ingest call.

Each ingest call records its instances in one vault transaction, one audit write and one
index transaction, which costs about as much for one instance as for twenty (each is a
durable commit). A sender waits for each C-STORE response before it sends the next
instance, so one association is served one instance at a time; but while an ingest call
runs, the instances other associations sent meanwhile wait here, and the next call takes
them all. No instance waits for a batch to fill: a call starts as soon as the previous one
is done. Every instance still gets its own result, answered only after its call returned
(de-identified, stored, recorded and indexed), so a batch changes no response.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = ["MAX_BATCH", "IngestBatcher"]

MAX_BATCH: Final = 32
"""Most instances one ingest call takes."""

Ingest = Callable[[Sequence[Path], Any], Sequence[Any]]
"""``IngestService.ingest(files, origin)``: one result per file, in order."""


@dataclass(eq=False)
class _Item:
    path: Path
    origin: Any
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class IngestBatcher:
    """Run ingest calls on one thread, each taking every instance waiting (by origin).

    Parameters
    ----------
    ingest:
        The ingest service's ``ingest`` method.
    max_batch:
        Most instances per call.
    """

    def __init__(self, ingest: Ingest, max_batch: int = MAX_BATCH) -> None:
        self._ingest = ingest
        self._max = max_batch
        self._pending: list[_Item] = []
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="dicomveil-ingest", daemon=True)
        self._thread.start()

    def submit(self, path: Path, origin: Any) -> Any:
        """Ingest ``path`` (from ``origin``); return its result once it is recorded.

        Raises
        ------
        Exception
            Whatever the ingest call raised (for every instance of that call).
        RuntimeError
            The batcher is stopped.
        """
        item = _Item(path, origin)
        with self._wake:
            if self._stopping:
                raise RuntimeError("the node is stopping")
            self._pending.append(item)
            self._wake.notify()
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item.result

    def stop(self) -> None:
        """Finish what is waiting, then end the thread."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join()

    def _take(self) -> list[_Item] | None:
        with self._wake:
            while not self._pending and not self._stopping:
                self._wake.wait()
            if not self._pending:
                return None
            origin = self._pending[0].origin
            batch = [item for item in self._pending if item.origin == origin][: self._max]
            taken = set(map(id, batch))
            self._pending = [item for item in self._pending if id(item) not in taken]
            return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            try:
                results = self._ingest([item.path for item in batch], batch[0].origin)
                for item, result in zip(batch, results, strict=True):
                    item.result = result
            except BaseException as exc:  # every instance of the call fails with it
                for item in batch:
                    item.error = exc
            for item in batch:
                item.done.set()
