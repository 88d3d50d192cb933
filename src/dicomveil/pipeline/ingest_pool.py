"""Received instances de-identified and archived on every core, however they arrive.

A server process runs its requests (or associations) in threads under one interpreter lock,
so the engine's CPU work (parsing, de-identifying, writing, reading back for the index) would
use one core per server process. :class:`IngestPool` hands a call's instances to the
:class:`~dicomveil.pipeline.executor.Executor`'s worker processes instead: split among them,
each worker stores its share in the archive (one flush per folder), and the results come
back in order. One instance alone goes to one worker: no pool starts per call.

Uploads spooled in anonymous memory are read by the workers through ``/proc/<server
pid>/fd`` (no copy); where the system does not allow that, :attr:`IngestPool.shares_memory`
is false and uploads are spooled to files.

A worker that dies (a crash, the out-of-memory killer) costs the instances it held, not the
call: the pool is restarted and each of them is tried again alone, so only the one that
kills a worker again fails (kind :attr:`~dicomveil.pipeline.failures.FailureKind.WORKER_CRASH`).

A call with one small instance (at most :data:`INLINE_BYTES`) runs in the calling thread
when the policy never decodes pixels: handing it to a worker and back (pickling, two pipe
writes, two wake-ups) cost about as much as de-identifying it, and one DICOM association is
served one instance at a time. What runs there is the header de-identification the workers
run (pixel data copied as bytes: no codec, no native code that could crash the process);
a policy that cleans pixels (codecs, OCR) keeps every instance in the workers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Final

from dicomveil.pipeline.executor import Executor, WorkerState
from dicomveil.pipeline.failures import FailureKind
from dicomveil.pipeline.ingest_work import (
    Ingested,
    Upload,
    failed,
    ingest_chunk,
    ingest_many,
    mark_existing,
    store_results,
)

__all__ = ["INLINE_BYTES", "IngestPool", "can_read"]

INLINE_BYTES: Final = 4 * 1024 * 1024
"""Largest instance a one-instance call de-identifies in the calling thread (see above)."""

WORKER_CRASH_REASON = "the de-identification process stopped while working on this instance"


def can_read(_state: WorkerState, path: str) -> bool:
    """Whether this process can open ``path`` (the pool's check of the server's memory
    files: ``/proc/<pid>/fd`` of another process may be closed to it)."""
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError:
        return False
    return True


def _split(uploads: Sequence[Upload], parts: int) -> list[list[Upload]]:
    """``uploads`` in at most ``parts`` runs of consecutive items, sizes differing by 1."""
    parts = max(1, min(parts, len(uploads)))
    size, extra = divmod(len(uploads), parts)
    chunks, start = [], 0
    for number in range(parts):
        end = start + size + (number < extra)
        chunks.append(list(uploads[start:end]))
        start = end
    return chunks


class IngestPool:
    """De-identify and archive uploads on an :class:`Executor` (thread-safe).

    Parameters
    ----------
    executor:
        The worker processes (or the calling thread).
    workers_store:
        Whether the workers store what they de-identify (``False`` for an archive that
        cannot be shared between processes, ``memory://``: this process stores then).
    """

    def __init__(self, executor: Executor, *, workers_store: bool) -> None:
        self.executor = executor
        self._workers_store = workers_store or executor.in_process
        self._lock = threading.Lock()
        self._probe: tuple[int, list[Future[bool]]] | None = None
        self._shares_memory: bool | None = True
        self.inline = not executor.setup.decodes_pixels
        """Whether one small instance is worked on in the calling thread."""
        if not executor.in_process:
            self._probe_memory()

    @property
    def processes(self) -> int:
        """Worker processes (``1``: in the calling thread)."""
        return 1 if self.executor.in_process else self.executor.processes

    def _probe_memory(self) -> None:
        """Ask the workers whether they can read this process's memory files (one question
        each: the pool starts its processes as work arrives, so this starts them all now)."""
        if not hasattr(os, "memfd_create"):
            self._shares_memory = False
            return
        fd = os.memfd_create("dicomveil-probe", os.MFD_CLOEXEC)
        os.write(fd, b"\0")
        path = f"/proc/{os.getpid()}/fd/{fd}"
        self._shares_memory = None
        futures = [self.executor.submit(can_read, path) for _ in range(self.processes)]
        self._probe = (fd, futures)

    @property
    def shares_memory(self) -> bool:
        """Whether the workers can read uploads spooled in this process's anonymous memory."""
        with self._lock:
            if self._shares_memory is None and self._probe is not None:
                fd, futures = self._probe
                try:
                    self._shares_memory = all(future.result() for future in futures)
                except BrokenProcessPool:
                    self._shares_memory = False
                finally:
                    os.close(fd)
                    self._probe = None
            return bool(self._shares_memory)

    def run(self, uploads: Sequence[Upload]) -> list[Ingested]:
        """Work on ``uploads`` and return one result each, in order."""
        executor = self.executor
        if executor.in_process:
            return executor.submit(ingest_chunk, list(uploads)).result()
        if self._runs_inline(uploads):
            local = executor.local_state()  # the runtime's store: it stores as it goes
            return ingest_chunk(local, list(uploads))
        pool = executor.pool
        submitted: list[tuple[list[Upload], Future[list[Ingested]] | None]] = []
        for chunk in _split(uploads, self.processes):
            try:
                submitted.append((chunk, executor.submit(ingest_chunk, chunk)))
            except BrokenProcessPool:
                submitted.append((chunk, None))
        results: list[Ingested] = []
        for chunk, future in submitted:
            try:
                if future is None:
                    raise BrokenProcessPool("the pool was broken before the work was handed out")
                results += future.result()
            except BrokenProcessPool:
                executor.restart(pool)
                results += [self._alone(upload) for upload in chunk]
        if not self._workers_store:
            store = executor.local_state().store
            assert store is not None
            store_results(store, [r for r, u in zip(results, uploads, strict=True) if u.archive])
        return results

    def run_unstored(self, uploads: Sequence[Upload]) -> tuple[list[Ingested], list[Ingested]]:
        """:meth:`run`, leaving the archive write of what is worked on in this thread (one
        small instance, or everything without worker processes) to the caller: the results,
        and those it is to store with :func:`put_results` once it has decided on them
        (empty: stored already). The caller can then flush the archive while it records
        the call (:mod:`dicomveil.pipeline.ingest`)."""
        if not self.executor.in_process and not self._runs_inline(uploads):
            return self.run(uploads), []
        local = self.executor.local_state()
        results = ingest_many(uploads, local.compiled, local.keys, None, local.tenants)
        if local.store is None:
            return results, []
        archived = [r for r, u in zip(results, uploads, strict=True) if u.archive]
        return results, mark_existing(local.store, archived)

    def _runs_inline(self, uploads: Sequence[Upload]) -> bool:
        if not self.inline or len(uploads) != 1:
            return False
        try:
            return os.stat(uploads[0].path).st_size <= INLINE_BYTES
        except OSError:
            return False  # the worker reports it

    def _alone(self, upload: Upload) -> Ingested:
        """Try ``upload`` again on its own (in a pool restarted after a crash)."""
        pool = self.executor.pool
        try:
            return self.executor.submit(ingest_chunk, [upload]).result()[0]
        except BrokenProcessPool:
            self.executor.restart(pool)
            source = Path(f"upload-{upload.number}")
            return Ingested(failed(source, WORKER_CRASH_REASON, FailureKind.WORKER_CRASH))

    def close(self) -> None:
        """Stop the workers (after the work handed to them)."""
        with self._lock:
            if self._probe is not None:
                os.close(self._probe[0])
                self._probe = None
                self._shares_memory = False
        self.executor.close()
