"""Concurrent, verified, retried uploads of staged files to a blob store.

Each object goes up through :meth:`~dicomveil.ports.BlobStore.put_file`, which checks size and
SHA-256 after the upload and never leaves a partial object visible. A destination that is
unavailable (:class:`~dicomveil.errors.StorageUnavailable`) is retried with exponential
backoff and jitter; when an object runs out of retries, or any other storage error occurs,
no new upload starts, the ones in flight finish or give up, and the error is returned so the
caller can stop resumably. Results are collected in the calling thread (journal writes stay
there): :class:`Uploader` takes uploads one by one while other work goes on (the batch submits
files as they are de-identified); :func:`upload_all` uploads an iterable.
"""

from __future__ import annotations

import queue
import random
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from dicomveil.errors import StorageError, StorageUnavailable
from dicomveil.ports import BlobInfo, BlobStore

__all__ = ["RetryPolicy", "Upload", "Uploader", "upload_all"]

_JITTER: Final = random.SystemRandom()
"""Jitter for retry waits: its own source, so retries (in a background thread) never touch
the global ``random`` state of the host application."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often, and how patiently, an unavailable destination is retried.

    Parameters
    ----------
    retries
        Retries of one object after its first attempt.
    initial
        Seconds before the first retry; each further retry waits twice as long...
    maximum
        ...up to this many seconds. Every wait is jittered to between half and all of it.
    """

    retries: int = 5
    initial: float = 0.5
    maximum: float = 30.0

    def __post_init__(self) -> None:
        if self.retries < 0 or self.initial < 0 or self.maximum < self.initial:
            raise ValueError("retries and delays must be >= 0, and maximum >= initial")

    def delay(self, attempt: int, rng: Callable[[], float] = _JITTER.random) -> float:
        """Return the wait before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
        base = min(self.maximum, self.initial * 2.0**attempt)
        return base * (0.5 + rng() / 2.0)


@dataclass(frozen=True, slots=True)
class Upload:
    """One object to upload: store key, local file, content type and metadata (PHI-free)."""

    key: str
    path: Path
    content_type: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: What the caller needs back with the result (the batch: journal row ids).
    ids: tuple[int, ...] = ()


class _Abandoned(Exception):
    """An upload given up because the uploads are stopping."""


class Uploader:
    """Uploads submitted one by one, ``threads`` at a time; completions are collected here.

    Parameters
    ----------
    store
        The destination.
    threads
        Concurrent transfers.
    retry
        Backoff for :class:`~dicomveil.errors.StorageUnavailable`.
    on_retry
        Called (from a transfer thread) with a one-line, PHI-free message before each wait.

    Notes
    -----
    The first error that is not retried, or outlives its retries, stops the uploader: later
    submissions are refused, transfers in flight give up at their next wait, and
    :attr:`error` tells why. Use it as a context manager (or call :meth:`close`).
    """

    def __init__(
        self,
        store: BlobStore,
        *,
        threads: int,
        retry: RetryPolicy,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self._store, self._retry, self._on_retry = store, retry, on_retry
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dicomveil-upload")
        self._pending: dict[Future[BlobInfo], Upload] = {}
        self._finished: queue.SimpleQueue[Future[BlobInfo]] = queue.SimpleQueue()
        self.error: StorageError | None = None

    @property
    def in_flight(self) -> int:
        """Uploads submitted and not yet collected."""
        return len(self._pending)

    def submit(self, item: Upload) -> bool:
        """Start uploading ``item``; return ``False`` (and do nothing) once stopped."""
        if self._stop.is_set():
            return False
        future = self._pool.submit(self._transfer, item)
        self._pending[future] = item
        future.add_done_callback(self._finished.put)
        return True

    def collect(self, *, block: bool = False) -> list[tuple[Upload, BlobInfo]]:
        """Return the uploads finished since the last call (waiting for one if ``block``)."""
        done: list[Future[BlobInfo]] = []
        if block and self._pending:
            done.append(self._finished.get())
        while not self._finished.empty():
            done.append(self._finished.get_nowait())
        finished = []
        for future in done:
            item = self._pending.pop(future)
            try:
                finished.append((item, future.result()))
            except (_Abandoned, CancelledError):
                continue
            except (StorageError, OSError) as exc:
                if self.error is None:
                    self.error = _as_storage_error(exc)
                self._stop.set()
        return finished

    def drain(self) -> list[tuple[Upload, BlobInfo]]:
        """Wait for every upload in flight; return those that finished."""
        finished = []
        while self._pending:
            finished += self.collect(block=True)
        return finished

    def close(self) -> None:
        """Stop: refuse new uploads, let those in flight give up, release the threads."""
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Uploader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _transfer(self, item: Upload) -> BlobInfo:
        attempt = 0
        while True:
            if self._stop.is_set():
                raise _Abandoned
            try:
                return self._store.put_file(
                    item.key, item.path, content_type=item.content_type, metadata=item.metadata
                )
            except StorageUnavailable as exc:
                if attempt >= self._retry.retries:
                    raise
                wait_for = self._retry.delay(attempt)
                attempt += 1
                if self._on_retry is not None:
                    retries = self._retry.retries
                    self._on_retry(f"{exc}; retry {attempt} of {retries} in {wait_for:.1f} s")
                if self._stop.wait(wait_for):
                    raise _Abandoned from None


def upload_all(
    store: BlobStore,
    uploads: Iterable[Upload],
    *,
    threads: int,
    retry: RetryPolicy,
    on_done: Callable[[Upload, BlobInfo], None],
    on_retry: Callable[[str], None] | None = None,
) -> StorageError | None:
    """Upload every item with ``threads`` transfers at a time; return what stopped it, if any.

    Parameters
    ----------
    store, threads, retry, on_retry
        As for :class:`Uploader`.
    uploads
        The objects; consumed lazily (two per thread are in flight at most).
    on_done
        Called in this thread with each verified upload and the stored object's info.

    Returns
    -------
    StorageError or None
        ``None`` when every item was uploaded; else the first error that stopped the uploads
        (unreadable staged files are reported as a :class:`~dicomveil.errors.StorageError`).
    """
    items: Iterator[Upload] = iter(uploads)
    with Uploader(store, threads=threads, retry=retry, on_retry=on_retry) as uploader:
        while True:
            while uploader.in_flight < threads * 2:
                item = next(items, None)
                if item is None or not uploader.submit(item):
                    break
            if not uploader.in_flight:
                return uploader.error
            for item, info in uploader.collect(block=True):
                on_done(item, info)


def _as_storage_error(exc: StorageError | OSError) -> StorageError:
    if isinstance(exc, StorageError):
        return exc
    reason = exc.strerror or type(exc).__name__
    wrapped = StorageError(f"a staged file could not be read: {reason}")
    wrapped.__cause__ = exc
    return wrapped
