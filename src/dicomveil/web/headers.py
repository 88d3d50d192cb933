"""Headers (DICOM JSON) of archived instances that the index does not hold yet.

STOW-RS indexes an instance's searchable attributes only: building the whole header as DICOM
JSON costs more than the rest of ingest. The header is built from the archived object the
first time something asks for it (WADO-RS ``/metadata``, QIDO-RS ``includefield``) and kept
in the index from then on.
"""

from __future__ import annotations

import dataclasses
import secrets
import shutil
from collections.abc import Iterable

from dicomveil.index import HeaderSource, Row, StoredInstance, metadata_from_file
from dicomveil.web.services import Services
from dicomveil.web.spool import Spool

__all__ = ["complete_instances", "complete_rows"]


def _build(services: Services, sources: Iterable[HeaderSource]) -> dict[str, str]:
    """Build the headers of ``sources`` from the archive; keep them in the index."""
    wanted = {source.sop_instance_uid: source.storage_key for source in sources}
    if not wanted:
        return {}
    built: dict[str, str] = {}
    folder = services.staging / f"headers-{secrets.token_hex(8)}"  # made only if needed
    spool = Spool(folder)
    try:
        for number, (uid, key) in enumerate(wanted.items()):
            copy = spool.create(f"header-{number}")
            copy.write(services.store.get_bytes(key))
            copy.finish()
            built[uid] = metadata_from_file(copy.path)
    finally:
        spool.close()
        shutil.rmtree(folder, ignore_errors=True)
    services.index.set_metadata(built)
    return built


def complete_instances(services: Services, found: list[StoredInstance]) -> list[StoredInstance]:
    """Return ``found`` with every header filled in (built where the index had none).

    Raises
    ------
    ObjectNotFound, StorageError
        An archived object cannot be read.
    MalformedInputError
        An archived object is not readable DICOM.
    """
    missing = [HeaderSource(i.sop_instance_uid, i.storage_key) for i in found if not i.metadata]
    built = _build(services, missing)
    return [
        dataclasses.replace(i, metadata=built[i.sop_instance_uid]) if not i.metadata else i
        for i in found
    ]


def complete_rows(services: Services, rows: list[Row]) -> list[Row]:
    """Return search ``rows`` with their representative headers filled in (see
    :func:`complete_instances`); rows searched without metadata are left as they are."""
    missing = [r.source for r in rows if r.metadata == "" and r.source is not None]
    built = _build(services, missing)
    return [
        dataclasses.replace(r, metadata=built[r.source.sop_instance_uid])
        if r.metadata == "" and r.source is not None
        else r
        for r in rows
    ]
