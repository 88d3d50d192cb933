"""DICOM JSON (PS3.18 Annex F) for QIDO-RS results and WADO-RS metadata.

Index rows become DICOM JSON objects with their RetrieveURL; ``includefield`` adds attributes
from the row's representative instance header; stored ``BulkDataURI`` placeholders become
absolute URLs of the instance's ``/bulkdata/{tag}`` resource.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydicom.datadict import tag_for_keyword

from dicomveil.index import BULK_PREFIX, Level, QueryError, Row
from dicomveil.index.attributes import BY_KEYWORD, COUNT_ATTRIBUTES

__all__ = [
    "Include",
    "element",
    "parse_includefield",
    "resolve_tag",
    "rewrite_bulk",
    "row_json",
]

_RETRIEVE_URL: Final = "00081190"
_MODALITIES: Final = ("00080061", "CS")
_NUMBERS: Final = frozenset({"IS", "US", "UL", "SS", "SL", "FL", "FD", "DS", "SV", "UV"})
_HEX: Final = re.compile(r"[0-9A-Fa-f]{8}")
_UID_KEYWORDS: Final = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")

_STUDY_KEYWORDS: Final = (
    "SpecificCharacterSet PatientName PatientID IssuerOfPatientID PatientBirthDate PatientSex "
    "OtherPatientIDsSequence PatientAge PatientSize PatientWeight EthnicGroup PatientComments "
    "PatientIdentityRemoved DeidentificationMethod DeidentificationMethodCodeSequence "
    "StudyInstanceUID StudyDate StudyTime ReferringPhysicianName StudyID AccessionNumber "
    "StudyDescription ProcedureCodeSequence TimezoneOffsetFromUTC"
)
_SERIES_KEYWORDS: Final = (
    "SpecificCharacterSet Modality SeriesInstanceUID SeriesNumber SeriesDescription SeriesDate "
    "SeriesTime Laterality BodyPartExamined ProtocolName PerformedProcedureStepStartDate "
    "PerformedProcedureStepStartTime PerformedProcedureStepDescription "
    "RequestAttributesSequence OperatorsName PatientPosition FrameOfReferenceUID Manufacturer "
    "ManufacturerModelName"
)


def _tags(keywords: str) -> frozenset[str]:
    return frozenset(f"{tag_for_keyword(k):08X}" for k in keywords.split())


_LEVEL_TAGS: Final = {Level.STUDY: _tags(_STUDY_KEYWORDS), Level.SERIES: _tags(_SERIES_KEYWORDS)}


@dataclass(frozen=True, slots=True)
class Include:
    """What ``includefield`` asked for: every attribute of the level, and/or some tags."""

    all: bool = False
    tags: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return self.all or bool(self.tags)


def resolve_tag(name: str) -> str | None:
    """Return the tag (8 upper-case hex digits) of a keyword or a tag, or ``None``."""
    if _HEX.fullmatch(name):
        return name.upper()
    tag = tag_for_keyword(name)
    return None if tag is None else f"{tag:08X}"


def parse_includefield(values: Iterable[str]) -> Include:
    """Parse ``includefield`` values (repeated and/or comma-separated keywords or tags).

    Raises
    ------
    QueryError
        A value is neither ``all``, a keyword nor a tag.
    """
    everything, tags = False, set()
    for value in values:
        for name in (v.strip() for v in value.split(",")):
            if not name:
                continue
            if name.lower() == "all":
                everything = True
                continue
            tag = resolve_tag(name.split(".")[0])
            if tag is None:
                raise QueryError("includefield: not an attribute keyword or tag")
            tags.add(tag)
    return Include(everything, frozenset(tags))


def element(vr: str, value: object) -> dict[str, Any]:
    """Return one DICOM JSON element (no ``Value`` when empty)."""
    values = value if isinstance(value, list) else [value]
    values = [v for v in values if v is not None and v != ""]
    if not values:
        return {"vr": vr}
    if vr == "PN":
        return {"vr": vr, "Value": [{"Alphabetic": str(v)} for v in values]}
    if vr in _NUMBERS:
        return {"vr": vr, "Value": [int(str(v)) if vr != "DS" else float(str(v)) for v in values]}
    return {"vr": vr, "Value": [str(v) for v in values]}


def rewrite_bulk(text: str, instance_url: str) -> str:
    """Turn the stored BulkDataURI placeholders of an instance into absolute URLs."""
    return text.replace(f'"{BULK_PREFIX}', f'"{instance_url}/bulkdata/')


def _urls(base: str, values: Mapping[str, Any]) -> tuple[str, str, str]:
    study = f"{base}/studies/{values.get('StudyInstanceUID')}"
    series = f"{study}/series/{values.get('SeriesInstanceUID')}"
    return study, series, f"{series}/instances/{values.get('SOPInstanceUID')}"


def row_json(row: Row, include: Include, base: str) -> dict[str, Any]:
    """Return the DICOM JSON object of one QIDO-RS result.

    Parameters
    ----------
    row:
        The index row (with ``metadata`` when ``include`` asks for anything).
    include:
        The ``includefield`` request.
    base:
        The DICOMweb root URL (``https://host/dicomweb``) for RetrieveURL and BulkDataURI.
    """
    out: dict[str, Any] = {}
    counts = {keyword: tag for keyword, tag, _column in COUNT_ATTRIBUTES[row.level]}
    for keyword, value in row.values.items():
        if keyword in counts:
            out[f"{counts[keyword]:08X}"] = element("IS", value)
        elif keyword == "ModalitiesInStudy":
            out[_MODALITIES[0]] = element(_MODALITIES[1], value)
        else:
            attribute = BY_KEYWORD[keyword]
            out[attribute.tag_hex] = element(attribute.vr, value)
    study, series, instance = _urls(base, row.values)
    url = {Level.STUDY: study, Level.SERIES: series, Level.INSTANCE: instance}[row.level]
    out[_RETRIEVE_URL] = {"vr": "UR", "Value": [url]}
    if include and row.metadata:
        header: dict[str, Any] = json.loads(row.metadata)
        uids = {k: _first(header, BY_KEYWORD[k].tag_hex) for k in _UID_KEYWORDS}
        prefix = f"{_urls(base, uids)[2]}/bulkdata/"
        for tag, entry in header.items():
            wanted = tag in include.tags or (
                include.all and (row.level is Level.INSTANCE or tag in _LEVEL_TAGS[row.level])
            )
            if wanted and tag not in out:
                uri = entry.get("BulkDataURI", "")
                if uri.startswith(BULK_PREFIX):
                    entry = {**entry, "BulkDataURI": prefix + uri[len(BULK_PREFIX) :]}
                out[tag] = entry
    return dict(sorted(out.items()))


def _first(header: dict[str, Any], tag: str) -> str:
    values = header.get(tag, {}).get("Value") or [""]
    return str(values[0])
