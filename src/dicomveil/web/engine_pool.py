"""The gateway's engine processes: every core de-identifies and archives uploads, however
the connections land.

A server process runs its requests in threads under one interpreter lock, so the engine's
CPU work (parsing, de-identifying, writing, reading back for the index) would use one core
per server process, and which process accepts which keep-alive connection is up to the
kernel. The pool gives each server process ``processes`` worker processes instead; a
request's uploads are split among them, each worker stores its share in the archive (one
flush per folder), and the results come back in order.

Workers are forked from a clean ``forkserver`` process (never from the threaded server) that
has the engine imported already, so a pool starts in milliseconds; each derives the keys and
compiles the policy once. Uploads spooled in anonymous memory are read by the workers through
``/proc/<server pid>/fd`` (no copy); where the system does not allow that,
:attr:`EnginePool.shares_memory` is false and uploads are spooled to files.

A worker that dies (a crash, the out-of-memory killer) costs the instances it held, not the
request: the pool is restarted and each of them is tried again alone, so only the one that
kills a worker again fails.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Final

from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.rules import CompiledPolicy
from dicomveil.profile.policy import Policy
from dicomveil.storage import BaseBlobStore
from dicomveil.web.ingest_work import (
    Ingested,
    Upload,
    can_read,
    failed,
    ingest_chunk,
    ingest_many,
    init_worker,
    store_results,
)

__all__ = ["WORKER_CRASH_KIND", "EnginePool"]

WORKER_CRASH_KIND: Final = "WorkerCrash"
"""Error kind of an instance whose de-identification process died on it (twice)."""

_PRELOAD: Final = ["dicomveil.web.ingest_work"]

log = logging.getLogger(__name__)


def _context() -> Any:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        return context
    return multiprocessing.get_context("spawn")  # pragma: no cover - not POSIX


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


class EnginePool:
    """De-identify and archive uploads in ``processes`` worker processes (``1``: in the
    calling thread).

    Parameters
    ----------
    secret, policy:
        What each worker derives its keys and compiles its policy from.
    keys, compiled:
        The same, ready, for work done in this process.
    store:
        The archive, for work done in this process.
    store_url, store_options:
        How each worker opens the archive; ``None`` when it cannot be shared between
        processes (``memory://``): the workers then leave the storing to this process.
    processes:
        Worker processes; ``1`` starts none.
    """

    def __init__(
        self,
        secret: bytes,
        policy: Policy,
        keys: PseudonymKeys,
        compiled: CompiledPolicy,
        store: BaseBlobStore,
        store_url: str | None,
        store_options: dict[str, Any],
        processes: int,
    ) -> None:
        self.processes = max(1, processes)
        self._initargs = (secret, policy, store_url, store_options)
        self._keys, self._compiled, self._store = keys, compiled, store
        self._workers_store = store_url is not None
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._probe: tuple[int, list[Future[bool]]] | None = None
        self._shares_memory: bool | None = True
        if self.processes > 1:
            try:
                self._executor = self._start()
                self._probe_memory()
            except (OSError, NotImplementedError, ImportError) as exc:  # no semaphores, ...
                log.warning(
                    "engine processes unavailable (%s); de-identifying in the server process",
                    type(exc).__name__,
                )
                self.close()
                self.processes, self._shares_memory = 1, True

    def _start(self) -> ProcessPoolExecutor:
        executor = ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=_context(),
            initializer=init_worker,
            initargs=self._initargs,
        )
        return executor

    def _probe_memory(self) -> None:
        """Ask the workers whether they can read this process's memory files (one question
        each: the pool starts its processes as work arrives, so this starts them all now)."""
        if not hasattr(os, "memfd_create"):
            self._shares_memory = False
            return
        assert self._executor is not None
        fd = os.memfd_create("dicomveil-probe", os.MFD_CLOEXEC)
        os.write(fd, b"\0")
        path = f"/proc/{os.getpid()}/fd/{fd}"
        self._shares_memory = None
        futures = [self._executor.submit(can_read, path) for _ in range(self.processes)]
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
        executor = self._executor
        if executor is None:
            return ingest_many(uploads, self._compiled, self._keys, self._store)
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
                results += [self._alone(upload, executor) for upload in chunk]
        if not self._workers_store:
            store_results(
                self._store, [r for r, u in zip(results, uploads, strict=True) if u.archive]
            )
        return results

    def _alone(self, upload: Upload, broken: ProcessPoolExecutor) -> Ingested:
        """Try ``upload`` again on its own, in a pool restarted after ``broken`` died."""
        executor = self._restart(broken)
        try:
            return executor.submit(ingest_chunk, [upload]).result()[0]
        except BrokenProcessPool:
            self._restart(executor)
            source = Path(f"upload-{upload.number}")
            reason = "the de-identification process stopped while working on this instance"
            return Ingested(failed(source, reason, WORKER_CRASH_KIND))

    def _restart(self, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        """The current pool, started anew if it is still ``broken`` (once for all callers)."""
        with self._lock:
            if self._executor is broken:
                broken.shutdown(wait=False, cancel_futures=True)
                self._executor = self._start()
            assert self._executor is not None
            return self._executor

    def close(self) -> None:
        """Stop the workers (after the work handed to them)."""
        with self._lock:
            executor, self._executor = self._executor, None
            if self._probe is not None:
                os.close(self._probe[0])
                self._probe = None
                self._shares_memory = False
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
