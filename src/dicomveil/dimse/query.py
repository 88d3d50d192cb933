"""C-FIND on the de-identified archive: a request identifier becomes index queries, and index
rows become response identifiers.

Matching is the index's (:mod:`dicomveil.index.matching`), the same as QIDO-RS: single
value, wild card, UID list, date/time range, universal matching. Patient and Study Root, at
the PATIENT, STUDY, SERIES and IMAGE levels; keys the index cannot match on match
universally and come back empty (PS3.4 §C.2.2.1.2 lets an SCP not support optional keys).
Only pseudonymous values are in the index, so only those can come back.

References
----------
PS3.4 §C.4.1 (C-FIND SCP behaviour), §C.6.1 (Patient Root) and §C.6.2 (Study Root) keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence

from dicomveil.dimse import encoding
from dicomveil.index import Condition, Level, Query, QueryError, Row, StudyIndex, matchable_at
from dicomveil.index import parse_condition as index_condition

__all__ = ["LEVELS", "FindRequest", "QueryError", "answers", "parse_identifier"]

LEVELS: Final[dict[str, Level]] = {
    "PATIENT": Level.STUDY,  # patients are answered from their studies
    "STUDY": Level.STUDY,
    "SERIES": Level.SERIES,
    "IMAGE": Level.INSTANCE,
}
_PATIENT_KEYWORDS: Final = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
_PATIENT_COUNTS: Final = {
    "NumberOfPatientRelatedStudies": None,
    "NumberOfPatientRelatedSeries": "NumberOfStudyRelatedSeries",
    "NumberOfPatientRelatedInstances": "NumberOfStudyRelatedInstances",
}
_NOT_KEYS: Final = frozenset({"QueryRetrieveLevel", "SpecificCharacterSet"})
_PAGE: Final = 500


@dataclass(frozen=True, slots=True)
class FindRequest:
    """One parsed C-FIND identifier.

    Attributes
    ----------
    level:
        The Query/Retrieve Level asked for (``PATIENT``, ``STUDY``, ``SERIES``, ``IMAGE``).
    conditions:
        Matching conditions by keyword (universal matching is no entry).
    returned:
        The keywords of the identifier, returned in every answer (in request order).
    """

    level: str
    conditions: dict[str, Condition]
    returned: tuple[str, ...]


def _text(value: object) -> str:
    """A request element's value as the query text the index parses."""
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(_text(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value)


def parse_identifier(identifier: Dataset, model: str) -> FindRequest:
    """Parse a C-FIND request identifier for the ``PATIENT`` or ``STUDY`` root ``model``.

    Raises
    ------
    QueryError
        No or an unknown Query/Retrieve Level, a level the model does not have, or a value
        malformed for its VR (the message names the keyword, never the value).
    """
    level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    if level not in LEVELS or (model == "STUDY" and level == "PATIENT"):
        raise QueryError("QueryRetrieveLevel: missing or not supported by this model")
    allowed = matchable_at(LEVELS[level])
    if level == "PATIENT":
        allowed = {k: v for k, v in allowed.items() if v.patient}
    conditions: dict[str, Condition] = {}
    returned: list[str] = []
    for element in identifier:
        keyword = element.keyword or keyword_for_tag(element.tag)
        if not keyword or keyword in _NOT_KEYS or element.tag.is_private:
            continue
        returned.append(keyword)
        attribute = allowed.get(keyword)
        if attribute is None or isinstance(element.value, DicomSequence):
            continue
        condition = index_condition(attribute, _text(element.value), case_insensitive_names=True)
        if condition is not None:
            conditions[keyword] = condition
    return FindRequest(level, conditions, tuple(returned))


def _rows(
    index: StudyIndex, request: FindRequest, most: int, organisation: str | None
) -> Iterator[Row]:
    offset = 0
    while offset < most:
        query = Query(
            LEVELS[request.level],
            conditions=request.conditions,
            limit=min(_PAGE, most - offset),
            offset=offset,
            flat=True,
            organisation=organisation,
        )
        result = index.search(query)
        yield from result.rows
        if not result.more:
            return
        offset += len(result.rows)


def _patients(rows: Iterator[Row]) -> Iterator[dict[str, object]]:
    """Group study rows into patient rows (by pseudonymous Patient ID and name)."""
    patients: dict[tuple[object, ...], dict[str, object]] = {}
    for row in rows:
        key = tuple(row.values.get(k) for k in _PATIENT_KEYWORDS[:2])
        patient = patients.get(key)
        if patient is None:
            patient = {k: row.values.get(k) for k in _PATIENT_KEYWORDS}
            patient.update(dict.fromkeys(_PATIENT_COUNTS, 0))
            patients[key] = patient
        for name, source in _PATIENT_COUNTS.items():
            add = 1 if source is None else int(str(row.values.get(source) or 0))
            patient[name] = int(str(patient[name])) + add
    yield from patients.values()


def _element_value(value: object) -> object:
    if value is None:
        return None
    if isinstance(value, list):
        return [str(v) for v in value] or None
    return str(value)


@lru_cache(maxsize=512)
def _tag_vr(keyword: str) -> tuple[int, str] | None:
    tag = tag_for_keyword(keyword)
    return None if tag is None else (tag, str(dictionary_VR(tag)))


_LEVEL_TAG: Final = 0x00080052
_RETRIEVE_AE_TAG: Final = 0x00080054
_CHARSET_TAG: Final = 0x00080005


def _answer_elements(
    request: FindRequest, values: dict[str, object], ae_title: str
) -> dict[int, tuple[int, str, object]]:
    """The answer's elements by tag: the returned keys, the level, the retrieve AE title, and
    ``ISO_IR 192`` when a value is not ASCII."""
    elements: dict[int, tuple[int, str, object]] = {_LEVEL_TAG: (_LEVEL_TAG, "CS", request.level)}
    for keyword in request.returned:
        tag_vr = _tag_vr(keyword)
        if tag_vr is None:
            continue
        tag, vr = tag_vr
        elements[tag] = (tag, vr, _element_value(values.get(keyword)))
    elements[_RETRIEVE_AE_TAG] = (_RETRIEVE_AE_TAG, "AE", ae_title)
    if any(not str(v).isascii() for v in values.values() if v is not None):
        elements[_CHARSET_TAG] = (_CHARSET_TAG, "CS", "ISO_IR 192")
    return elements


def _answer(
    request: FindRequest, values: dict[str, object], ae_title: str, implicit: bool | None
) -> Dataset:
    elements = _answer_elements(request, values, ae_title)
    if implicit is not None:
        encoded = encoding.identifier(elements.values(), implicit=implicit)
        if encoded is not None:
            return encoded
    answer = Dataset()
    for tag, vr, value in elements.values():
        answer.add_new(tag, vr, value)
    return answer


def answers(
    index: StudyIndex,
    request: FindRequest,
    *,
    ae_title: str,
    most: int,
    organisation: str | None = None,
    implicit: bool | None = None,
) -> Iterator[Dataset]:
    """Yield the response identifiers for ``request`` (at most ``most``), from the studies
    of ``organisation`` only when the caller is bound to one.

    With ``implicit`` (the negotiated transfer syntax: Implicit or Explicit VR Little
    Endian), flat answers come pre-encoded (:func:`dicomveil.dimse.encoding.identifier`);
    answers with a sequence or an ambiguous VR, and all answers without ``implicit``, are
    plain datasets.
    """
    rows = _rows(index, request, most, organisation)
    if request.level == "PATIENT":
        for values in _patients(rows):
            yield _answer(request, values, ae_title, implicit)
        return
    for row in rows:
        yield _answer(request, dict(row.values), ae_title, implicit)
