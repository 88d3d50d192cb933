"""Recording a run: the way back into the vault, every outcome into the audit log.

One :class:`RunRecorder` per run, in the process that collects outcomes (workers never touch
the vault or the audit log). Records and audit events are buffered and written in batches, so
recording costs one transaction and one ``fsync`` per batch, not per file.

The vault transaction and the audit write of a batch are independent durable writes (each
waits for its own ``fsync``): they run at once, the vault's on a recording thread, so a batch
waits for the slower of the two, not for both in turn (one DICOM association is served one
instance at a time: this wait is most of its answer time). :meth:`RunRecorder.flush` returns
only once both are on disk, and raises if either failed (the vault's error first).

The recording threads are started on the first write that needs them, per process: a child
forked after a recording (a test's worker, ``multiprocessing`` with ``fork``) inherits the
parent's executor but not its threads, so work handed to it would never run and the write
would wait for ever. They are therefore
:class:`~dicomveil.threads.ProcessThreads` (a new executor in each
process), and :func:`shutdown_recorders` stops this process's threads.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Final

from dicomveil.audit.entry import AuditEvent, Outcome
from dicomveil.audit.events import file_outcome, run_finished, run_started
from dicomveil.engine.identity import IdentityRecord
from dicomveil.threads import ProcessThreads

if TYPE_CHECKING:  # neither the engine nor SQLAlchemy is needed to record a run
    from dicomveil.audit import AuditLog
    from dicomveil.pipeline.outcome import FileOutcome
    from dicomveil.profile.policy import Policy
    from dicomveil.vault import Vault

__all__ = ["RunRecorder", "shutdown_recorders"]

_RECORDING_THREADS: Final = 4


_threads = ProcessThreads("dicomveil-record", _RECORDING_THREADS)
"""Where vault transactions run while the audit log is written (shared by every run of the
process)."""


def shutdown_recorders() -> None:
    """Stop this process's recording threads once their work is done (a later recording
    starts new ones)."""
    _threads.shutdown()


_OUTCOMES: dict[str, Outcome] = {
    "ok": "success",
    "duplicate": "success",  # its content is in DEST: an identical input's output
    "failed": "failure",
    "skipped": "not-found",
}


class RunRecorder:
    """Buffers identity records and audit events of one run and writes them in batches.

    Parameters
    ----------
    vault, audit:
        Where the way back and the audit trail go (either may be ``None`` to skip it).
    run_id, actor, policy, pseudonym_key_id:
        What the audit entries say about the run.
    batch:
        How many outcomes are buffered before a write.
    seconds:
        Longest an outcome stays buffered (when outcomes keep coming): writing as the run
        goes keeps the last write, which nothing overlaps, short.
    start_now:
        Write the run's start event at once; otherwise it goes with the first write (a
        short run, such as one HTTP request, is then recorded in one write).
    organisation:
        The tenant the run is for (recorded in its start entry; ``None``: none).
    origin:
        Where the run came from (entry point, calling AE, peer), added to its start entry.
    """

    def __init__(
        self,
        vault: Vault | None,
        audit: AuditLog | None,
        *,
        run_id: str,
        actor: str,
        policy: Policy,
        pseudonym_key_id: str,
        files: int | None = None,
        batch: int = 500,
        seconds: float = 0.25,
        start_now: bool = True,
        organisation: str | None = None,
        origin: Mapping[str, str] | None = None,
    ) -> None:
        self.vault, self.audit = vault, audit
        self.run_id, self.actor, self.batch = run_id, actor, batch
        self.seconds = seconds
        self._since = time.monotonic()
        self._records: list[IdentityRecord] = []
        self._events: list[AuditEvent] = []
        self.recorded = 0
        if audit is not None:
            started = run_started(
                actor=actor,
                run_id=run_id,
                policy=policy.name,
                options=[o.value for o in policy.options],
                pseudonym_key_id=pseudonym_key_id,
                vault_key_id=vault.key_id if vault is not None else None,
                files=files,
                organisation=organisation,
            )
            if origin:
                started = AuditEvent(
                    started.event,
                    started.actor,
                    started.outcome,
                    {**started.details, **{k: v for k, v in origin.items() if v}},
                )
            self._events.append(started)
            if start_now:
                self.flush()

    def add(self, outcome: FileOutcome) -> None:
        """Buffer one file's outcome (identity for the vault, hashes for the audit log)."""
        identity = outcome.identity
        if identity is not None and outcome.status == "ok":
            self._records.append(identity)
        pseudo = identity.pseudonymous if identity is not None else None
        self._events.append(
            file_outcome(
                actor=self.actor,
                run_id=self.run_id,
                outcome=_OUTCOMES.get(outcome.status, "failure"),
                output_sha256=outcome.sha256 or None,
                pseudo_patient_id=pseudo.patient_id if pseudo else None,
                pseudo_study_uid=pseudo.study_instance_uid if pseudo else None,
                pseudo_sop_instance_uid=pseudo.sop_instance_uid if pseudo else None,
                error=outcome.error_kind or None,
            )
        )
        if len(self._events) >= self.batch or time.monotonic() - self._since > self.seconds:
            self.flush()

    def flush(self) -> None:
        """Write what is buffered: the vault's records and the audit events at once.

        Returns once both writes are durable. Raises the vault's error (else the audit
        log's) when either failed; what the other wrote stays written (audit entries of a
        run whose vault write failed are followed by the run's failed end).
        """
        records = self._records if self.vault is not None else []
        events = self._events if self.audit is not None else []
        self._records, self._events = [], []
        self._since = time.monotonic()
        vault_write: Future[object] | None = None
        if records and self.vault is not None:
            if events:
                vault_write = _threads.get().submit(self.vault.record, records, self.run_id)
            else:
                self.vault.record(records, self.run_id)
        try:
            if events and self.audit is not None:
                self.audit.append_many(events)
        finally:
            if vault_write is not None:
                vault_write.result()  # waits for it; raises the vault's error
        self.recorded += len(records)

    def finish(self, counts: dict[str, int], failed: bool = False) -> None:
        """Close the run in the audit log, with what is still buffered (one write)."""
        if self.audit is not None:
            outcome: Outcome = "failure" if failed else "success"
            self._events.append(
                run_finished(actor=self.actor, run_id=self.run_id, counts=counts, outcome=outcome)
            )
        self.flush()

    def __enter__(self) -> RunRecorder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is not None:  # an interrupted run still records what it finished
            self.finish({"interrupted": 1, "recorded": self.recorded}, failed=True)
