"""De-identifying uploaded instances: the HTTP entry points' call into the ingest service.

Every route that receives instances (STOW-RS, ``/api/v1/deidentify``) calls
:meth:`dicomveil.pipeline.ingest.IngestService.process` (the service the DICOM node calls
too) and counts the outcome in the gateway's metrics.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from dicomveil.pipeline.ingest import Origin
from dicomveil.pipeline.ingest_work import CONFLICT_KIND, STUDY_MISMATCH_KIND, Ingested
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
    results = services.ingest.process(
        uploads, workspace, origin, archive=archive, study=study, salt=salt
    )
    services.metrics.count_instances(entry, dict(Counter(r.outcome.status for r in results)))
    return results
