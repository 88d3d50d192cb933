"""De-identifying uploaded instances: the HTTP entry points' call into the ingest service.

Every route that receives instances (STOW-RS, ``/api/v1/deidentify``) calls
:meth:`dicomveil.pipeline.ingest.IngestService.process` (the service the DICOM node calls
too) and counts the outcome in the gateway's metrics.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from dicomveil.pipeline.files import FileOutcome
from dicomveil.pipeline.ingest import IngestResult, Origin
from dicomveil.pipeline.ingest_work import CONFLICT_KIND, STUDY_MISMATCH_KIND, Ingested
from dicomveil.web.services import Services

__all__ = ["CONFLICT_KIND", "STUDY_MISMATCH_KIND", "Ingested", "deidentify_uploads", "queued"]


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
    organisation: str | None = None,
) -> list[Ingested]:
    """De-identify ``uploads`` (files in ``workspace``), optionally archive and index them.

    See :meth:`~dicomveil.pipeline.ingest.IngestService.process`; ``actor`` is the token's
    audit actor, ``entry`` the entry point (``stow``, ``api``), for the metrics too;
    ``salt`` salts the pseudonym keys of instances not archived (separation of duties:
    ``docs/security.md``); ``organisation`` is the token's (its prefix, key and index
    scope apply: :mod:`dicomveil.tenants`).
    """
    origin = Origin(entry=entry, actor=actor, organisation=organisation)
    submitter = services.runtime.submitter
    if archive and submitter is not None:  # cluster mode: stored, queued (docs/cluster.md)
        results = [
            queued(r, n) for n, r in enumerate(submitter.ingest(uploads, origin, study=study), 1)
        ]
    else:
        results = services.ingest.process(
            uploads, workspace, origin, archive=archive, study=study, salt=salt
        )
    services.metrics.count_instances(entry, dict(Counter(r.outcome.status for r in results)))
    return results


def queued(result: IngestResult, number: int) -> Ingested:
    """A cluster-mode acceptance as an :class:`Ingested` (``"ok"``: accepted, no record:
    not indexed yet; the answer names the pseudonymous UIDs, no retrieve URL)."""
    failure = result.failure
    outcome = FileOutcome(
        Path(f"upload-{number}"),
        "ok" if failure is None else "failed",
        reason="" if failure is None else failure.reason,
        error_kind="" if failure is None else failure.kind.value,
    )
    return Ingested(
        outcome,
        sop_class_uid=result.sop_class_uid or "",
        sop_instance_uid=result.sop_instance_uid or "",
    )
