"""Recording a run: the way back into the vault, every outcome into the audit log.

One :class:`RunRecorder` per run, in the process that collects outcomes (workers never touch
the vault or the audit log). Records and audit events are buffered and written in batches, so
recording costs one transaction and one ``fsync`` per batch, not per file.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import TYPE_CHECKING

from dicomveil.audit.entry import AuditEvent, Outcome
from dicomveil.audit.events import file_outcome, run_finished, run_started
from dicomveil.engine.identity import IdentityRecord

if TYPE_CHECKING:  # neither the engine nor SQLAlchemy is needed to record a run
    from dicomveil.audit import AuditLog
    from dicomveil.pipeline.outcome import FileOutcome
    from dicomveil.profile.policy import Policy
    from dicomveil.vault import Vault

__all__ = ["RunRecorder"]

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
    ) -> None:
        self.vault, self.audit = vault, audit
        self.run_id, self.actor, self.batch = run_id, actor, batch
        self.seconds = seconds
        self._since = time.monotonic()
        self._records: list[IdentityRecord] = []
        self._events: list[AuditEvent] = []
        self.recorded = 0
        if audit is not None:
            self._events.append(
                run_started(
                    actor=actor,
                    run_id=run_id,
                    policy=policy.name,
                    options=[o.value for o in policy.options],
                    pseudonym_key_id=pseudonym_key_id,
                    vault_key_id=vault.key_id if vault is not None else None,
                    files=files,
                    organisation=organisation,
                )
            )
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
        """Write what is buffered."""
        if self._records and self.vault is not None:
            self.vault.record(self._records, self.run_id)
            self.recorded += len(self._records)
        self._records = []
        if self._events and self.audit is not None:
            self.audit.append_many(self._events)
        self._events = []
        self._since = time.monotonic()

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
