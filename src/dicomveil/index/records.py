"""What the index holds of one de-identified instance, and how it is taken from the file.

The record carries the indexed attributes (see :mod:`dicomveil.index.attributes`), where the
instance is stored, and its whole header as DICOM JSON (PS3.18 Annex F) for WADO-RS
``/metadata`` and QIDO-RS ``includefield``. Bulk data (the pixel data and any long binary
value at the top level) is not copied into the JSON: it is replaced by a ``BulkDataURI``
placeholder, ``dicomveil-bulk:<tag>``, that the web layer turns into an absolute URL.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import EllipsisType
from typing import TYPE_CHECKING, Any, Final

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from dicomveil.index.attributes import ATTRIBUTES, Attribute, MatchKind

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
    "values_from_elements",
]

BULK_PREFIX: Final = "dicomveil-bulk:"
"""Prefix of the BulkDataURI placeholders stored in the metadata (followed by the tag)."""

BULK_THRESHOLD: Final = 1024
"""Top-level binary values longer than this (bytes) are served as bulk data, not inline."""

_BULK_VRS: Final = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})

Value = str | int | None

_REQUIRED: Final = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


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
    organisation:
        The organisation (tenant) code the instance came from; ``None``: none (the
        single-tenant default). Recorded on the study when the study is first indexed.
    """

    values: Mapping[str, Value]
    storage_key: str
    size: int
    sha256: str
    transfer_syntax_uid: str
    metadata: str = field(repr=False)
    organisation: str | None = None

    def __post_init__(self) -> None:
        for keyword in _REQUIRED:
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


def _value(ds: Dataset, attribute: Attribute) -> Value:
    """The indexed value of one attribute of ``ds``, as pydicom reads it."""
    try:
        element = ds.get(attribute.tag)
        raw = _first(element.value) if element is not None else None
    except (ValueError, TypeError, OverflowError):  # a malformed value: not indexed
        raw = None
    if raw is None or str(raw).strip() == "":
        return None
    if attribute.kind is MatchKind.INTEGER:
        try:
            return int(float(str(raw)))
        except ValueError:
            return None
    return str(raw).strip()


def indexed_values(ds: Dataset) -> dict[str, Value]:
    """Return the indexed attributes of ``ds`` by keyword (first value of multi-valued ones)."""
    return {attribute.keyword: _value(ds, attribute) for attribute in _STORED}


_STORED: Final = tuple(a for a in ATTRIBUTES if a.kind is not MatchKind.MODALITIES)
"""The attributes taken from each instance (ModalitiesInStudy is computed from the series)."""

_PLAIN: Final = re.compile(rb"[ -\[\]-~]*")
"""Printable ASCII but the backslash: a value that reads the same in every character set and
holds one value."""
_INTEGER: Final = re.compile(rb" *[+-]?[0-9]{1,15} *")
_TEXT_VRS: Final = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "PN", "SH", "TM", "UI"})


def _plain(raw: RawDataElement, attribute: Attribute) -> Value | EllipsisType:
    """The indexed value of a raw element when it is plainly encoded (``...`` otherwise:
    pydicom decides). Plain values read the same through pydicom (checked by the tests on
    every file pydicom ships)."""
    value = raw.value
    if value is None or (raw.VR is not None and raw.VR != attribute.vr):
        return ...
    if attribute.vr == "US":
        return int.from_bytes(value, "little") if len(value) == 2 else ...
    if attribute.vr == "UI":
        value = value.rstrip(b"\0")
    if attribute.vr == "IS":
        if not value.strip():
            return None
        return int(value) if _INTEGER.fullmatch(value) else ...
    if attribute.vr not in _TEXT_VRS or not _PLAIN.fullmatch(value):
        return ...
    return value.decode("ascii").strip() or None


def values_from_elements(
    elements: Mapping[BaseTag, RawDataElement], dataset: Callable[[], Dataset | None]
) -> dict[str, Value] | None:
    """:func:`indexed_values` of a header scanned into raw elements, decoding plain values
    directly (several times faster than pydicom) and the others through ``dataset()``, the
    same header read by pydicom; ``None`` when that is needed and cannot be had."""
    values: dict[str, Value] = {}
    read: Dataset | None = None
    for attribute in _STORED:
        raw = elements.get(BaseTag(attribute.tag))
        value = None if raw is None else _plain(raw, attribute)
        if value is ...:
            read = read if read is not None else dataset()
            if read is None:
                return None
            value = _value(read, attribute)
        values[attribute.keyword] = value
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
    :meth:`~dicomveil.index.StudyIndex.set_metadata`). The indexed values are then taken
    from the header's bytes where they are plainly encoded (see :func:`values_from_elements`).

    Raises
    ------
    MalformedInputError
        The file is not readable DICOM.
    """
    if not with_metadata:
        found = _values_from_head(path)
        if found is not None:
            values, syntax = found
            return InstanceRecord(values, storage_key, size, sha256, syntax, metadata="")
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


_HEAD_BYTES: Final = 64 * 1024
"""Bytes read for the header on the quick path (a longer header takes the reader's path)."""


def _values_from_head(path: Path) -> tuple[dict[str, Value], str] | None:
    """The indexed values and transfer syntax of a file the pipeline's byte-level reader
    takes whole (header, and pixel data ending the file); ``None`` when only
    :func:`read_instance` can tell (or say what is wrong)."""
    from dicomveil.dicomio.encoded import header_dataset, pixel_span, read_head, scan_head

    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        head = read_head(fd, os.fstat(fd).st_size, _HEAD_BYTES)
        scan = None if head is None else scan_head(head)
        if head is None or scan is None:
            return None
        if scan.pixel_tag is not None and pixel_span(fd, head, scan.stop, path) is None:
            return None
    finally:
        os.close(fd)
    values = values_from_elements(scan.elements, lambda: header_dataset(head))
    if values is None or not all(values.get(keyword) for keyword in _REQUIRED):
        return None
    return values, str(head.transfer_syntax)


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
