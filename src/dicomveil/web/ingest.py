"""De-identifying uploaded instances: the one path every HTTP entry point takes.

Each upload goes through :func:`dicomveil.pipeline.files.deidentify_file` (the same function
as ``deid`` and batches), then, when archiving, into the blob store and the index. The way
back goes to the vault and every outcome to the audit log through
:class:`~dicomveil.pipeline.recording.RunRecorder`, one run per request. Order: de-identify,
store, record (vault + audit), index; an instance becomes visible over DICOMweb only when its
way back is recorded.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path

from dicomveil.audit.entry import AuditEvent
from dicomveil.pipeline.recording import RunRecorder
from dicomveil.web.ingest_work import CONFLICT_KIND, STUDY_MISMATCH_KIND, Ingested
from dicomveil.web.request_plan import plan_uploads, settle_existing
from dicomveil.web.services import Services

__all__ = ["CONFLICT_KIND", "STUDY_MISMATCH_KIND", "Ingested", "deidentify_uploads"]


def deidentify_uploads(
    services: Services,
    uploads: list[Path],
    workspace: Path,
    *,
    actor: str,
    entry: str,
    archive: bool,
    study: str | None = None,
    salt: str = "",
) -> list[Ingested]:
    """De-identify ``uploads`` (files in ``workspace``), optionally archive and index them.

    De-identifying and archiving run in the gateway's engine processes (see
    :class:`~dicomveil.web.engine_pool.EnginePool`); recording and indexing run here.

    Parameters
    ----------
    uploads:
        The uploaded files, one instance each.
    workspace:
        The request's private folder; de-identified files are written under
        ``workspace/out``.
    actor:
        Who sent them (the token's actor), for the audit log.
    entry:
        The entry point, for metrics (``stow``, ``api``).
    archive:
        Store the results in the archive and index them.
    study:
        Take only instances of this study (pseudonymous Study Instance UID); the others
        fail with the error kind :data:`STUDY_MISMATCH_KIND` and are neither stored nor
        recorded in the vault.
    salt:
        Salt the pseudonym keys with this (never with ``archive``): the results cannot be
        linked to the archive's pseudonyms (see ``docs/security.md``, separation of duties).

    Returns
    -------
    list of Ingested
        One per upload, in order. Failures carry a PHI-free reason. Repeated and already
        archived instances are handled as :mod:`dicomveil.web.request_plan` says; conflicts
        and replacements are audited (``instance_conflict``).

    Raises
    ------
    VaultError, AuditError, StudyIndexError
        The way back, the audit trail or the index could not be written: nothing of the
        request is indexed then.
    """
    if salt and archive:
        raise ValueError("archived instances take the server's pseudonyms: no salt")
    plan = plan_uploads(services, uploads, str(workspace / "out"), archive=archive, study=study)
    if salt:
        plan.work[:] = [replace(upload, salt=salt) for upload in plan.work]
    run_id = uuid.uuid4().hex
    recorder = RunRecorder(
        services.vault,
        services.audit,
        run_id=run_id,
        actor=actor,
        policy=services.policy,
        pseudonym_key_id=services.keys.key_id,
        files=len(uploads),
        start_now=False,  # one request, one write to the audit log
    )
    with recorder:
        results = plan.results(services.engine.run(plan.work), services)
        if archive:
            settle_existing(services, results)
        for result in results:
            recorder.add(result.outcome)
        counts = Counter(r.outcome.status for r in results)
        recorder.finish(dict(counts), failed=bool(counts["failed"]))
        _audit_conflicts(services, results, actor=actor, run_id=run_id)
    services.metrics.count_instances(entry, dict(counts))
    if archive:
        services.index.add([r.record for r in results if r.record is not None and not r.unchanged])
    return results


def _audit_conflicts(
    services: Services, results: list[Ingested], *, actor: str, run_id: str
) -> None:
    """Record every archived instance replaced, and every one refused as a conflict."""
    events = [
        AuditEvent(
            "instance_conflict",
            actor,
            "success" if result.replaced else "failure",
            {
                "run_id": run_id,
                "action": "replaced" if result.replaced else "refused",
                "pseudo_sop_instance_uid": result.sop_instance_uid or None,
                "output_sha256": result.outcome.sha256 or None,
            },
        )
        for result in results
        if result.replaced or result.outcome.error_kind == CONFLICT_KIND
    ]
    if events:
        services.audit.append_many(events)
