"""Direct uploads (issue #15): pre-signed PUT URLs to the incoming store, then ingest.

- :mod:`~dicomveil.uploads.presign`: sign a ``PUT`` for S3, GCS and Azure;
- :mod:`~dicomveil.uploads.registry`: the uploads database (value-free progress);
- :mod:`~dicomveil.uploads.service`: create, complete (enqueue or ingest), follow;
- :mod:`~dicomveil.uploads.settings`: the ``[uploads]`` table.

``docs/uploads.md`` is the user's guide.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dicomveil.uploads.service import UploadService

if TYPE_CHECKING:
    from dicomveil.runtime import Runtime

__all__ = ["UploadService", "open_upload_service"]


def open_upload_service(
    runtime: Runtime,
    on_quarantined: Callable[[Sequence[tuple[str, str]]], None] | None = None,
    **store_options: Any,
) -> UploadService:
    """Open the upload service of a runtime: its ``--config`` ``[uploads]`` and ``[cluster]``.

    In cluster mode (``runtime.submitter``, set by
    :func:`~dicomveil.cluster.submit.attach_cluster`) the uploads go to the submitter's
    incoming store and broker; otherwise to ``[cluster] incoming_url`` and the ingest
    service. ``on_quarantined`` is told of each failed original kept in the quarantine (events).

    Raises
    ------
    ConfigError
        Bad settings, or the incoming store or the broker cannot be opened.
    """
    from dicomveil.cluster.settings import ClusterSettings
    from dicomveil.storage import open_store
    from dicomveil.uploads.settings import UploadSettings

    config: Path | None = getattr(runtime.settings, "config_file", None)
    home = Path(runtime.settings.home)
    shared = getattr(runtime.settings, "database_url", None)
    settings = UploadSettings.load(config, home=home, shared=shared)
    submitter = runtime.submitter  # cluster mode (--queue): its broker and incoming store
    if submitter is not None:
        incoming, queue = submitter.incoming, submitter.queue
    else:
        incoming = open_store(ClusterSettings.load(config).incoming(home), **store_options)
        queue = None
    return UploadService(
        settings,
        incoming,
        runtime.ingest,
        runtime.workspace,
        queue,
        quarantine=home / "quarantine",
        on_quarantined=on_quarantined,
        owns_incoming=submitter is None,
    )
