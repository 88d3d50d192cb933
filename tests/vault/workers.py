"""Functions run in separate processes by the concurrency tests (importable by ``spawn``)."""

from __future__ import annotations

from pathlib import Path

from dicomveil.audit import AuditLog
from dicomveil.audit.events import file_outcome
from dicomveil.vault import Vault
from tests.vault.corpus import make_records


def deidentify_worker(
    url: str, secret: bytes, audit_dir: str, audit_secret: bytes, worker: int
) -> int:
    """Record this worker's patients plus a shared one, one instance at a time, auditing each."""
    records = make_records(
        patients=2, studies=1, series=2, instances=3, first_patient=10 + 2 * worker
    )
    records += make_records(patients=1, studies=1, series=1, instances=3, first_patient=99)
    audit = AuditLog(Path(audit_dir), audit_secret)
    with Vault.open(url, secret) as vault:
        for record in records:
            vault.record([record], run_id=f"run-{worker}")
            audit.append(
                file_outcome(
                    actor=f"worker-{worker}",
                    run_id=f"run-{worker}",
                    outcome="success",
                    pseudo_sop_instance_uid=record.pseudonymous.sop_instance_uid,
                )
            )
    return len(records)
