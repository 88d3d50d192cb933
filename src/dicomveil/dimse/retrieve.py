"""C-GET and C-MOVE: which archived instances a retrieve identifier names, and reading them.

Retrieval uses the unique keys of the level (PS3.4 §C.4.2.2.1, §C.4.3.2.1): Patient ID at
the PATIENT level, Study, Series or SOP Instance UIDs (one value or a UID list) below it. The
instances come from the de-identified archive as stored, read without decoding pixel data.

References
----------
PS3.4 §C.4.2 (C-MOVE), §C.4.3 (C-GET).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from typing import Final

from pydicom import dcmread
from pydicom.dataset import Dataset

from dicomveil.dimse.query import LEVELS
from dicomveil.index import (
    Level,
    Query,
    QueryError,
    StoredInstance,
    StudyIndex,
    parse_condition,
)
from dicomveil.index.attributes import BY_KEYWORD
from dicomveil.storage import BaseBlobStore

__all__ = ["MAX_SUBOPERATIONS", "Selection", "load", "select_instances"]

MAX_SUBOPERATIONS: Final = 65535
"""Number of ... Suboperations are US: a retrieve of more instances cannot be reported."""

_UNIQUE: Final = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}


@dataclass(frozen=True, slots=True)
class Selection:
    """The instances a retrieve names, and their (pseudonymous) studies, for the audit."""

    instances: list[StoredInstance]
    studies: tuple[str, ...]


def _unique_value(identifier: Dataset, keyword: str) -> str:
    value = identifier.get(keyword)
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    return "\\".join(str(v).strip() for v in value)


def select_instances(
    index: StudyIndex, identifier: Dataset, model: str, *, organisation: str | None = None
) -> Selection:
    """Find the archived instances a C-GET/C-MOVE identifier asks for (of ``organisation``'s
    studies only, when the caller is bound to one: another's match nothing).

    Raises
    ------
    QueryError
        No or an unknown level, or a missing or malformed unique key (the message names the
        keyword, never the value).
    """
    level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    if level not in LEVELS or (model == "STUDY" and level == "PATIENT"):
        raise QueryError("QueryRetrieveLevel: missing or not supported by this model")
    keyword = _UNIQUE[level]
    raw = _unique_value(identifier, keyword)
    if not raw or "*" in raw or "?" in raw:
        raise QueryError(f"{keyword}: a retrieve needs the unique key's value")
    condition = parse_condition(BY_KEYWORD[keyword], raw)
    assert condition is not None
    search_level = LEVELS[level]
    found: list[StoredInstance] = []
    offset = 0
    while True:
        query = Query(
            search_level,
            {keyword: condition},
            limit=500,
            offset=offset,
            flat=True,
            organisation=organisation,
        )
        result = index.search(query)
        for row in result.rows:
            values = row.values
            study = str(values.get("StudyInstanceUID") or "")
            series = values.get("SeriesInstanceUID") if search_level is not Level.STUDY else None
            sop = values.get("SOPInstanceUID") if search_level is Level.INSTANCE else None
            found.extend(index.instances(study, _opt(series), _opt(sop), organisation=organisation))
            if len(found) > MAX_SUBOPERATIONS:
                raise QueryError(f"the retrieve names more than {MAX_SUBOPERATIONS} instances")
        if not result.more:
            break
        offset += len(result.rows)
    unique = list({item.sop_instance_uid: item for item in found}.values())
    studies = tuple(dict.fromkeys(item.study_instance_uid for item in unique))
    return Selection(unique, studies)


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def load(store: BaseBlobStore, instance: StoredInstance) -> Dataset:
    """Read one archived instance (file meta included; pixel data stays encoded bytes)."""
    return dcmread(BytesIO(store.get_bytes(instance.storage_key)), force=True)


def iter_loaded(store: BaseBlobStore, selection: Selection) -> Iterator[Dataset]:
    """Read the selected instances one after another."""
    for instance in selection.instances:
        yield load(store, instance)
