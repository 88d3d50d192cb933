"""Forward as a teleradiology batch: the study's de-identified instances plus a manifest.

This is the batch format of ``dicomveil batch`` (:mod:`dicomveil.pipeline.manifest`):
``{batch_id}/{study}/{series}/{sop}.dcm`` objects and ``{batch_id}/manifest.json`` uploaded
last, in a destination opened like any batch destination
(:func:`~dicomveil.pipeline.destination.open_destination`: ``file://``, ``s3://``,
``az://``, ``gs://``). The instances are already de-identified in the archive, so they are
copied as they are (no second de-identification). The batch id is chosen once per job and
kept in the queue, so a retried job fills the same batch and uploads only what is missing;
a later round of the study is a new, complete batch.
"""

from __future__ import annotations

from datetime import UTC, datetime

from dicomveil import __version__
from dicomveil.errors import StorageError
from dicomveil.forward.queue import Job
from dicomveil.forward.sender import Delivery, ForwardFailed
from dicomveil.forward.settings import Rank, Target
from dicomveil.pipeline.batch_runner import DICOM_CONTENT_TYPE
from dicomveil.pipeline.batch_state import new_batch_id
from dicomveil.pipeline.destination import open_destination
from dicomveil.pipeline.manifest import (
    MANIFEST_CONTENT_TYPE,
    MANIFEST_NAME,
    ManifestFile,
    build_manifest,
    encode_manifest,
)

__all__ = ["BatchSender"]


class BatchSender:
    """Ship each job as one batch to the destination ``url`` of ``target``.

    Parameters
    ----------
    target
        The batch destination URL.
    organization
        Written into the manifest (the policy's organization).
    timeout
        Seconds per network request (cloud destinations).
    """

    def __init__(self, target: Target, organization: str, timeout: float) -> None:
        self._target, self._organization, self._timeout = target, organization, timeout

    def scope(self, job: Job) -> str:
        """Sent records are kept per job: each job is its own batch."""
        return f"batch:{job.id}"

    def send(self, delivery: Delivery) -> None:
        """Upload the missing instances, then the manifest; ForwardFailed on a store error."""
        job = delivery.job
        batch_id = job.batch_id or new_batch_id(datetime.now(UTC))
        if job.batch_id is None:
            delivery.remember_batch(batch_id)
        try:
            store = open_destination(self._target.url, timeout=self._timeout)
        except StorageError as exc:
            raise ForwardFailed(f"batch destination unavailable ({type(exc).__name__})") from None
        try:
            pending = {x.sop_instance_uid for x in delivery.pending}
            files: list[ManifestFile] = []
            for item in delivery.covered:
                path = f"{job.study_uid}/{item.series_uid}/{item.sop_instance_uid}.dcm"
                key = f"{batch_id}/{path}"
                metadata = {"batch_id": batch_id, "priority": Rank(job.rank).name,
                            "study_id": job.study_uid}  # fmt: skip
                if item.sop_instance_uid in pending:
                    info = store.put_bytes(
                        key, delivery.read(item.storage_key),
                        content_type=DICOM_CONTENT_TYPE, metadata=metadata,
                    )  # fmt: skip
                    delivery.sent([item.sop_instance_uid])
                else:
                    found = store.head(key)
                    if found is None:  # recorded as sent, but gone: the batch is broken
                        raise ForwardFailed("batch object missing at the destination")
                    info = found
                files.append(
                    ManifestFile(path, job.study_uid, item.modality or "", info.size,
                                 info.sha256 or "")
                )  # fmt: skip
            header = {
                "batch_id": batch_id,
                "priority": Rank(job.rank).name,
                "organization": self._organization,
                "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "generator": f"dicomveil {__version__}",
            }
            manifest = encode_manifest(build_manifest(header, files))
            store.put_bytes(
                f"{batch_id}/{MANIFEST_NAME}", manifest, content_type=MANIFEST_CONTENT_TYPE
            )
        except StorageError as exc:
            raise ForwardFailed(f"batch upload failed ({type(exc).__name__})") from None
        finally:
            store.close()
