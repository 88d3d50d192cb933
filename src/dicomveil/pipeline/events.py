"""What the ingest service tells its listeners: instances stored, recorded and indexed.

A listener (the router's completion tracker, a metrics counter) is called once per
:meth:`~dicomveil.pipeline.ingest.IngestService.ingest` call, in the calling thread, after
the instances are durable (archived, their way back recorded, indexed). It must be fast
(enqueue, do not send) and must not raise: the service catches and logs, value-free, what it
raises. Events carry pseudonymous and de-identified values only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dicomveil.pipeline.ingest import Origin

__all__ = ["IngestListener", "InstanceStored"]


@dataclass(frozen=True, slots=True)
class InstanceStored:
    """One instance now in the archive (de-identified values only).

    Attributes
    ----------
    study_uid, series_uid, sop_instance_uid:
        The pseudonymous UIDs.
    sop_class_uid, modality:
        As stored.
    storage_key:
        Its key in the runtime's archive.
    origin:
        Who sent it, through which entry point.
    attributes:
        De-identified attributes by keyword, as indexed (``Modality``,
        ``StudyDescription``, ``AccessionNumber``...).
    """

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    modality: str | None
    storage_key: str
    origin: Origin
    attributes: Mapping[str, str]


IngestListener = Callable[[Sequence[InstanceStored]], None]
"""Called with the instances one ingest call stored (see the module's documentation)."""
