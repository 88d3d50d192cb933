"""Shipping a batch's staged files while the rest is still being de-identified.

The :class:`Shipper` is handed inputs as soon as the journal records them de-identified (never
earlier: the journal must know an input is staged before it can say it is uploaded), uploads
them on its threads, and records each verified upload in the journal from the calling thread.
Two inputs that map to the same object (the same SOP Instance UID twice in a source) are never
uploaded at the same time: the later one waits for the final round, after de-identification,
when the staged file is final; that last upload then sets the digest of every input of the
object, so the journal always describes what the store holds.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from types import TracebackType
from typing import Protocol

from dicomveil.errors import StorageError
from dicomveil.paths import contained_path
from dicomveil.pipeline.batch_state import STAGED_DIR, BatchInfo
from dicomveil.pipeline.batch_upload import RetryPolicy, Upload, Uploader
from dicomveil.pipeline.journal import InputRow, Journal, JournalUpdate
from dicomveil.ports import BlobInfo, BlobStore

__all__ = ["DICOM_CONTENT_TYPE", "Progress", "Shipper"]

DICOM_CONTENT_TYPE = "application/dicom"
#: Upload records are grouped: at most this many, or this many seconds, per journal commit.
_COMMIT_EVERY, _COMMIT_SECONDS = 128, 1.0

Staged = InputRow | JournalUpdate


class Progress(Protocol):
    """What the shipper reports to (the batch's events)."""

    def advance(self, name: str, files: int, size: int) -> None:
        """``files`` more files of ``size`` bytes are uploaded (``name`` is ``"upload"``)."""

    def retrying(self, message: str) -> None:
        """An upload waits and retries (called from upload threads)."""


class Shipper:
    """Uploads staged inputs of one batch and records them (see the module docstring).

    Parameters
    ----------
    info, journal, store
        The batch, its journal and its destination.
    threads, retry
        Concurrent uploads and backoff (see :class:`~.batch_upload.Uploader`).
    progress
        Where uploads are reported.
    """

    def __init__(
        self,
        info: BatchInfo,
        journal: Journal,
        store: BlobStore,
        *,
        threads: int,
        retry: RetryPolicy,
        progress: Progress,
    ) -> None:
        self._info, self._journal, self._progress = info, journal, progress
        self._staged = info.folder / STAGED_DIR
        self._uploader = Uploader(store, threads=threads, retry=retry, on_retry=progress.retrying)
        self._busy: set[str] = set()  # paths uploaded or being uploaded by this shipper
        self._records: list[tuple[tuple[int, ...], str, int, str]] = []
        self._last = time.monotonic()

    @property
    def error(self) -> StorageError | None:
        """Why uploads stopped, if they did."""
        return self._uploader.error

    def offer(self, rows: Iterable[Staged]) -> None:
        """Start uploading staged inputs (those sharing a busy object wait for :meth:`finish`)."""
        for row in rows:
            if row.state != "deidentified" or row.path in self._busy:
                continue
            if not self._uploader.submit(
                self._upload(row.path, row.staged, row.study_id, (row.id,))
            ):
                return
            self._busy.add(row.path)
        self.poll()

    def poll(self) -> None:
        """Record the uploads finished so far (without waiting)."""
        self._record(self._uploader.collect())

    def finish(self) -> StorageError | None:
        """Wait for the uploads in flight, upload what is left, record all; return any error.

        What is left: inputs staged before this run and inputs that waited for their object.
        """
        self._wait()
        self._flush()  # what is still "deidentified" in the journal now is really left
        if self.error is None:
            by_path: dict[str, list[InputRow]] = {}
            for row in self._journal.rows("deidentified"):
                by_path.setdefault(row.path, []).append(row)
            for path, rows in by_path.items():
                last = rows[-1]
                ids = tuple(row.id for row in rows)
                if not self._uploader.submit(self._upload(path, last.staged, last.study_id, ids)):
                    break
            self._wait()
        self._flush()
        return self.error

    def _wait(self) -> None:
        """Wait for every upload in flight, recording each as it finishes."""
        while self._uploader.in_flight:
            self._record(self._uploader.collect(block=True))

    def close(self) -> None:
        """Stop the uploads and record those that finished."""
        self._uploader.close()
        self._flush()

    def __enter__(self) -> Shipper:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _upload(self, path: str, staged: str, study_id: str, ids: tuple[int, ...]) -> Upload:
        batch_id, priority = self._info.batch_id, self._info.priority.value
        return Upload(
            key=f"{batch_id}/{path}",
            path=contained_path(self._staged, staged),
            content_type=DICOM_CONTENT_TYPE,
            metadata={"batch_id": batch_id, "priority": priority, "study_id": study_id},
            ids=ids,
        )

    def _record(self, finished: list[tuple[Upload, BlobInfo]]) -> None:
        for item, info in finished:
            path = item.key.partition("/")[2]
            self._records.append((item.ids, path, info.size, info.sha256 or ""))
            self._progress.advance("upload", 1, info.size)
        now = time.monotonic()
        if len(self._records) >= _COMMIT_EVERY or now - self._last > _COMMIT_SECONDS:
            self._flush()

    def _flush(self) -> None:
        self._journal.mark_uploaded(self._records)
        self._records = []
        self._last = time.monotonic()
