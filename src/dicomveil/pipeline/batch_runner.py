"""The phases of one batch drive: de-identify, upload, manifest (see :mod:`.batch`).

:class:`BatchRunner` holds the batch's lock and journal for one
:func:`~dicomveil.pipeline.batch.resume_batch` call; :class:`BatchEvents` are the hooks a
caller uses to follow it.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from dicomveil.errors import StorageError, StorageUnavailable
from dicomveil.pipeline.batch_ship import DICOM_CONTENT_TYPE, Shipper
from dicomveil.pipeline.batch_state import (
    STAGED_DIR,
    BatchInfo,
    BatchStatus,
    journal_status,
    quarantine_folder,
    write_summary,
)
from dicomveil.pipeline.batch_upload import RetryPolicy, Upload, upload_all
from dicomveil.pipeline.destination import sweep_partial_writes
from dicomveil.pipeline.journal import (
    JOURNAL_NAME,
    LOCK_NAME,
    Journal,
    JournalUpdate,
)
from dicomveil.pipeline.manifest import (
    MANIFEST_CONTENT_TYPE,
    MANIFEST_NAME,
    ManifestFile,
    build_manifest,
    encode_manifest,
)
from dicomveil.pipeline.outcome import FileOutcome, upload_key
from dicomveil.pipeline.quarantine import REASONS_NAME, quarantine_failures
from dicomveil.pipeline.recording import RunRecorder
from dicomveil.pipeline.run import run_deidentification
from dicomveil.pipeline.sources import discover
from dicomveil.ports import BlobInfo, BlobStore

__all__ = ["DICOM_CONTENT_TYPE", "BatchEvents", "BatchResult", "BatchRunner", "clean_staging"]

#: Journal writes are grouped: at most this many outcomes, or this many seconds, per commit.
_COMMIT_EVERY, _COMMIT_SECONDS = 128, 0.25


class BatchEvents:
    """Hooks a caller overrides to follow a batch (all do nothing by default).

    ``retrying`` may be called from upload threads; the others from the calling thread.
    """

    def phase(self, name: str, total: int) -> None:
        """Phase ``name`` (``"deidentify"``, ``"upload"``) expects ``total`` files.

        Called again when the total changes (an input that failed is not uploaded).
        Phases overlap: inputs are uploaded while others are still being de-identified.
        """

    def advance(self, name: str, files: int, size: int) -> None:
        """``files`` more files (``size`` bytes) of phase ``name`` are done."""

    def phase_done(self, name: str) -> None:
        """Phase ``name`` ended."""

    def failed(self, source: Path, reason: str) -> None:
        """An input could not be de-identified (``source`` is a local path: show, never ship)."""

    def retrying(self, message: str) -> None:
        """The destination is unavailable; an upload waits and retries (PHI-free message)."""


@dataclass(slots=True)
class BatchResult:
    """The end of one :func:`resume_batch` call: the batch's status and this call's timings."""

    status: BatchStatus
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the batch is complete with every input uploaded (exit code 0)."""
        return self.status.state == "complete" and not self.status.inputs.get("failed")


class BatchRunner:
    """One drive of one batch, holding its lock and journal."""

    def __init__(
        self,
        info: BatchInfo,
        journal: Journal,
        store: BlobStore,
        secret: bytes,
        home: Path,
        events: BatchEvents,
    ) -> None:
        self.info, self.journal, self.store = info, journal, store
        self.secret, self.home, self.events = secret, home, events
        self.staged = info.folder / STAGED_DIR
        self.seconds: dict[str, float] = {}

    def run(
        self, recorder: RunRecorder, workers: int | None, threads: int, retry: RetryPolicy
    ) -> BatchResult:
        """Run what is left of the batch and return its state at the end.

        De-identification and upload overlap: each input is uploaded as soon as the journal
        records it staged. ``seconds`` holds the de-identification time, the upload time after
        it (``upload``) and the ``total``.
        """
        journal = self.journal
        if journal.meta().get("discovered") != "1":
            journal.add_inputs(discover(self.info.source))
        journal.set_meta({"state": "running", "error": ""})
        journal.reset_missing(self.staged)
        sweep_partial_writes(self.info.dest_url, self.info.batch_id)
        started = time.perf_counter()
        counts = journal.counts()
        if counts["discovered"]:
            self.events.phase("deidentify", counts["discovered"])
        self.events.phase("upload", counts["discovered"] + counts["deidentified"])
        with Shipper(
            self.info, journal, self.store, threads=threads, retry=retry, progress=self.events
        ) as shipper:
            shipper.offer(journal.rows("deidentified"))  # staged by an earlier run
            self._deidentify(recorder, workers, shipper)
            self._quarantine()
            self.seconds["deidentify"] = time.perf_counter() - started
            mark = time.perf_counter()
            failure = shipper.finish()
        self.events.phase_done("upload")
        error = None if failure is None else _stopped("upload", failure, retry)
        manifest: BlobInfo | None = None
        if error is None:
            manifest, error = self._upload_manifest(retry)
        self.seconds["upload"] = time.perf_counter() - mark
        self.seconds["total"] = time.perf_counter() - started
        counts = journal.counts()
        if error is not None:
            state = "failed" if error == _NOTHING_TO_SHIP else "stopped"
            journal.set_meta({"state": state, "error": error})
            recorder.finish(counts, failed=True)
            return BatchResult(journal_status(journal, self.home, running=True), self.seconds)
        journal.set_meta({"state": "complete", "manifest_sha256": _digest(manifest)})
        recorder.finish(counts, failed=bool(counts["failed"]))
        # the staging folder is removed once the journal is closed
        status = replace(journal_status(journal, self.home, running=True), staging=None)
        write_summary(self.info.folder, status)
        return BatchResult(status, self.seconds)

    # -- de-identify --------------------------------------------------------------------

    def _deidentify(self, recorder: RunRecorder, workers: int | None, shipper: Shipper) -> None:
        """De-identify the inputs not yet staged, handing each to ``shipper`` once recorded."""
        todo = self.journal.rows("discovered")
        if not todo:
            return
        ids = {str(row.source): row.id for row in todo}
        buffer: list[JournalUpdate] = []
        last = time.monotonic()
        expected = len(todo) + len(self.journal.rows("deidentified"))

        def commit() -> None:
            recorder.flush()  # the vault first: the journal must never run ahead of it
            self.journal.apply(buffer)
            shipper.offer(buffer)  # only now may they be uploaded (and recorded uploaded)
            buffer.clear()

        def on_outcome(outcome: FileOutcome) -> None:
            nonlocal last, expected
            recorder.add(outcome)
            buffer.append(_update(ids[str(outcome.source)], outcome))
            self.events.advance("deidentify", 1, outcome.size)
            if outcome.status != "ok":
                expected -= 1
                self.events.phase("upload", expected)
            if outcome.status == "failed":
                self.events.failed(outcome.source, outcome.reason)
            if len(buffer) >= _COMMIT_EVERY or time.monotonic() - last > _COMMIT_SECONDS:
                commit()
                last = time.monotonic()
            else:
                shipper.poll()

        run_deidentification(
            [row.source for row in todo],
            self.staged,
            self.info.policy,
            self.secret,
            workers=workers,
            hash_output=True,
            on_outcome=on_outcome,
            run_id=self.info.batch_id,
        )
        commit()
        self.events.phase_done("deidentify")

    def _quarantine(self) -> None:
        """Copy the failed inputs to the batch's quarantine (again, if a crash cut it short)."""
        failed = self.journal.rows("failed")
        folder = quarantine_folder(self.home, self.info.batch_id)
        if failed and len(_listed(folder / REASONS_NAME)) != len(failed):
            outcomes = [FileOutcome(row.source, "failed", reason=row.reason) for row in failed]
            quarantine_failures(outcomes, folder, organisation=self.info.tenant)

    # -- manifest -----------------------------------------------------------------------

    def _upload_manifest(self, retry: RetryPolicy) -> tuple[BlobInfo | None, str | None]:
        """Write the manifest and upload it; return its info, or why it was not uploaded."""
        rows = self.journal.rows("uploaded")
        if not rows:
            return None, _NOTHING_TO_SHIP
        files = [ManifestFile(r.path, r.study_id, r.modality, r.size, r.sha256) for r in rows]
        local = self.info.folder / MANIFEST_NAME
        local.write_bytes(encode_manifest(build_manifest(self.info.header, files)))
        stored: list[BlobInfo] = []
        item = Upload(
            key=self.info.manifest_key,
            path=local,
            content_type=MANIFEST_CONTENT_TYPE,
            metadata={"batch_id": self.info.batch_id, "priority": self.info.priority.value},
        )
        error = upload_all(
            self.store,
            [item],
            threads=1,
            retry=retry,
            on_done=lambda _, info: stored.append(info),
            on_retry=self.events.retrying,
        )
        if error is not None:
            return None, _stopped("manifest upload", error, retry)
        return stored[0], None


def clean_staging(folder: Path) -> None:
    """Remove what a finished batch no longer needs (``summary.json`` stays)."""
    shutil.rmtree(folder / STAGED_DIR, ignore_errors=True)
    names = (MANIFEST_NAME, JOURNAL_NAME, JOURNAL_NAME + "-wal", JOURNAL_NAME + "-shm")
    for name in (*names, LOCK_NAME):  # the lock is still held: unlinking it is harmless
        (folder / name).unlink(missing_ok=True)


_NOTHING_TO_SHIP = "no input could be de-identified; nothing was uploaded"


def _stopped(what: str, error: StorageError, retry: RetryPolicy) -> str:
    """Say why the uploads stopped (PHI-free: the store's URL and a pseudonymous key)."""
    if isinstance(error, StorageUnavailable):
        return (
            f"{what} stopped: the destination is unavailable after {retry.retries} "
            f"retries ({error})"
        )
    return f"{what} stopped: {error}"


def _listed(reasons: Path) -> list[object]:
    """The entries of a quarantine's ``reasons.json`` (none when missing or unreadable)."""
    try:
        entries = json.loads(reasons.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return entries if isinstance(entries, list) else []


def _digest(info: BlobInfo | None) -> str:
    return info.sha256 or "" if info is not None else ""


def _update(row_id: int, outcome: FileOutcome) -> JournalUpdate:
    if outcome.status != "ok" or outcome.identity is None:
        # a duplicate (the same content as an input already staged) is skipped, with why
        state = "failed" if outcome.status == "failed" else "skipped"
        return JournalUpdate(row_id, state, reason=outcome.reason, error_kind=outcome.error_kind)
    pseudo = outcome.identity.pseudonymous
    return JournalUpdate(
        row_id,
        "deidentified",
        staged=outcome.output,
        path=upload_key(outcome.output),
        study_id=pseudo.study_id,
        modality=outcome.modality,
        size=outcome.size,
        sha256=outcome.sha256,
    )
