"""What the index holds of one de-identified instance, and how it is taken from the file.

The record carries the indexed attributes (see :mod:`dicomveil.index.attributes`), where the
instance is stored, and its whole header as DICOM JSON (PS3.18 Annex F) for WADO-RS
``/metadata`` and QIDO-RS ``includefield``. Bulk data (the pixel data and any long binary
value at the top level) is not copied into the JSON: it is replaced by a ``BulkDataURI``
placeholder, ``dicomveil-bulk:<tag>``, that the web layer turns into an absolute URL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydicom.dataset import Dataset

from dicomveil.index.attributes import ATTRIBUTES, MatchKind

if TYPE_CHECKING:
    from dicomveil.dicomio import Instance

__all__ = [
    "BULK_PREFIX",
    "BULK_THRESHOLD",
    "InstanceRecord",
    "dataset_json",
    "indexed_values",
    "metadata_from_file",
    "record_from_file",
]

BULK_PREFIX: Final = "dicomveil-bulk:"
"""Prefix of the BulkDataURI placeholders stored in the metadata (followed by the tag)."""

BULK_THRESHOLD: Final = 1024
"""Top-level binary values longer than this (bytes) are served as bulk data, not inline."""

_BULK_VRS: Final = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})

Value = str | int | None


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """One de-identified instance as the index stores it (no PHI: pseudonyms only).

    Attributes
    ----------
    values:
        The indexed attributes by keyword (``str``, ``int`` for integer attributes, or
        ``None`` when absent). ``StudyInstanceUID``, ``SeriesInstanceUID`` and
        ``SOPInstanceUID`` are required.
    storage_key:
        Where the object lies in the archive's blob store.
    size, sha256:
        Size and SHA-256 of the stored object.
    transfer_syntax_uid:
        The transfer syntax it is stored in.
    metadata:
        The header as DICOM JSON text (bulk data by placeholder URI); ``""`` when it is
        left to the first read.
    """

    values: Mapping[str, Value]
    storage_key: str
    size: int
    sha256: str
    transfer_syntax_uid: str
    metadata: str = field(repr=False)

    def __post_init__(self) -> None:
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            if not self.values.get(keyword):
                raise ValueError(f"an instance record needs {keyword}")

    def text(self, keyword: str) -> str:
        """Return a value as text (``""`` when absent)."""
        value = self.values.get(keyword)
        return "" if value is None else str(value)


def _first(value: Any) -> Any:
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return value[0] if len(value) else None
    return value


def indexed_values(ds: Dataset) -> dict[str, Value]:
    """Return the indexed attributes of ``ds`` by keyword (first value of multi-valued ones)."""
    values: dict[str, Value] = {}
    for attribute in ATTRIBUTES:
        if attribute.kind is MatchKind.MODALITIES:
            continue  # computed from the study's series
        try:
            element = ds.get(attribute.tag)
            raw = _first(element.value) if element is not None else None
        except (ValueError, TypeError, OverflowError):  # a malformed value: not indexed
            raw = None
        if raw is None or str(raw).strip() == "":
            values[attribute.keyword] = None
        elif attribute.kind is MatchKind.INTEGER:
            try:
                values[attribute.keyword] = int(float(str(raw)))
            except ValueError:
                values[attribute.keyword] = None
        else:
            values[attribute.keyword] = str(raw).strip()
    return values


def dataset_json(ds: Dataset, *, pixel_vr: str | None = None, pixel_tag: int = 0x7FE00010) -> str:
    """Return the DICOM JSON of ``ds`` with top-level bulk data as placeholder URIs.

    Parameters
    ----------
    ds:
        The header (file meta excluded; pixel data not loaded).
    pixel_vr, pixel_tag:
        The VR and tag of the pixel data element when the instance has one (it is not in
        ``ds``).
    """
    document: dict[str, Any] = ds.to_json_dict(
        bulk_data_threshold=1 << 62, suppress_invalid_tags=True
    )
    for tag, element in document.items():
        inline = element.get("InlineBinary")
        if element.get("vr") in _BULK_VRS and isinstance(inline, str):
            if len(inline) * 3 // 4 > BULK_THRESHOLD:
                document[tag] = {"vr": element["vr"], "BulkDataURI": BULK_PREFIX + tag}
    if pixel_vr is not None:
        tag = f"{pixel_tag:08X}"
        document[tag] = {"vr": pixel_vr, "BulkDataURI": BULK_PREFIX + tag}
    return json.dumps(dict(sorted(document.items())), separators=(",", ":"))


def record_from_file(
    path: Path, *, storage_key: str, size: int, sha256: str, with_metadata: bool = True
) -> InstanceRecord:
    """Read a de-identified instance's header and return its record.

    Without ``with_metadata`` the record's ``metadata`` is ``""``: building the DICOM JSON
    costs more than the rest of the record, so ingest leaves it to the first read (see
    :meth:`~dicomveil.index.StudyIndex.set_metadata`).

    Raises
    ------
    MalformedInputError
        The file is not readable DICOM.
    """
    from dicomveil.dicomio import read_instance

    instance = read_instance(path)
    return InstanceRecord(
        values=indexed_values(instance.dataset),
        storage_key=storage_key,
        size=size,
        sha256=sha256,
        transfer_syntax_uid=str(instance.transfer_syntax),
        metadata=_metadata(instance) if with_metadata else "",
    )


def metadata_from_file(path: Path) -> str:
    """Return the DICOM JSON of a de-identified instance's header (bulk data by placeholder).

    Raises
    ------
    MalformedInputError
        The file is not readable DICOM.
    """
    from dicomveil.dicomio import read_instance

    return _metadata(read_instance(path))


def _metadata(instance: Instance) -> str:
    pixel = instance.pixel
    pixel_vr, pixel_tag = None, 0x7FE00010
    if pixel is not None:
        pixel_vr, pixel_tag = pixel.vr or ("OB" if pixel.encapsulated else "OW"), pixel.tag
    return dataset_json(instance.dataset, pixel_vr=pixel_vr, pixel_tag=pixel_tag)
