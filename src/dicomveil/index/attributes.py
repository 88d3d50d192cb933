"""The attributes the index keeps, per QIDO-RS level, and how each one is matched.

Patient attributes are answered at the study level, as QIDO-RS does (PS3.18 Table 10.6.1-5).
Every attribute here is a real column of the index, so matching on it is one indexed SQL
condition; anything else a client asks to match on is reported as unsupported.

References
----------
PS3.18 §10.6.1.2 (query parameters) and Tables 10.6.1-5/-6/-7 (required matching and return
attributes); PS3.4 §C.2.2.2 (attribute matching).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

__all__ = [
    "ATTRIBUTES",
    "BY_KEYWORD",
    "COUNT_ATTRIBUTES",
    "Attribute",
    "Level",
    "MatchKind",
    "attributes_for",
    "matchable_at",
]


class Level(StrEnum):
    """A QIDO-RS query level."""

    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


class MatchKind(StrEnum):
    """How a query value for an attribute is interpreted (PS3.4 §C.2.2.2)."""

    TEXT = "text"  #: single value or wild card, case-sensitive
    PERSON_NAME = "pn"  #: like TEXT, case-insensitive when configured or fuzzy
    DATE = "date"  #: single value or range
    TIME = "time"  #: single value or range
    UID = "uid"  #: single value or UID list
    INTEGER = "int"  #: single value
    MODALITIES = "modalities"  #: any of the study's series modalities matches


@dataclass(frozen=True, slots=True)
class Attribute:
    """One indexed attribute.

    Attributes
    ----------
    keyword, tag, vr:
        The DICOM keyword, tag (as an ``int``) and VR.
    level:
        The level whose rows carry the attribute.
    column:
        The column holding the value (in the table of ``level``, or ``patients`` for
        patient attributes).
    kind:
        How query values are matched.
    patient:
        A patient attribute: answered at the study level, kept in the ``patients`` table.
    """

    keyword: str
    tag: int
    vr: str
    level: Level
    column: str
    kind: MatchKind
    patient: bool = False

    @property
    def tag_hex(self) -> str:
        """The tag as eight upper-case hex digits (the DICOM JSON key)."""
        return f"{self.tag:08X}"


_S, _SE, _I = Level.STUDY, Level.SERIES, Level.INSTANCE
_K = MatchKind

ATTRIBUTES: Final[tuple[Attribute, ...]] = (
    Attribute("PatientName", 0x00100010, "PN", _S, "patient_name", _K.PERSON_NAME, patient=True),
    Attribute("PatientID", 0x00100020, "LO", _S, "patient_id", _K.TEXT, patient=True),
    Attribute("PatientBirthDate", 0x00100030, "DA", _S, "birth_date", _K.DATE, patient=True),
    Attribute("PatientSex", 0x00100040, "CS", _S, "sex", _K.TEXT, patient=True),
    Attribute("StudyInstanceUID", 0x0020000D, "UI", _S, "study_instance_uid", _K.UID),
    Attribute("StudyDate", 0x00080020, "DA", _S, "study_date", _K.DATE),
    Attribute("StudyTime", 0x00080030, "TM", _S, "study_time", _K.TIME),
    Attribute("AccessionNumber", 0x00080050, "SH", _S, "accession_number", _K.TEXT),
    Attribute("StudyID", 0x00200010, "SH", _S, "study_id", _K.TEXT),
    Attribute("ModalitiesInStudy", 0x00080061, "CS", _S, "modalities", _K.MODALITIES),
    Attribute(
        "ReferringPhysicianName", 0x00080090, "PN", _S, "referring_physician_name", _K.PERSON_NAME
    ),
    Attribute("StudyDescription", 0x00081030, "LO", _S, "study_description", _K.TEXT),
    Attribute("SeriesInstanceUID", 0x0020000E, "UI", _SE, "series_instance_uid", _K.UID),
    Attribute("Modality", 0x00080060, "CS", _SE, "modality", _K.TEXT),
    Attribute("SeriesNumber", 0x00200011, "IS", _SE, "series_number", _K.INTEGER),
    Attribute("SeriesDescription", 0x0008103E, "LO", _SE, "series_description", _K.TEXT),
    Attribute("SOPClassUID", 0x00080016, "UI", _I, "sop_class_uid", _K.UID),
    Attribute("SOPInstanceUID", 0x00080018, "UI", _I, "sop_instance_uid", _K.UID),
    Attribute("InstanceNumber", 0x00200013, "IS", _I, "instance_number", _K.INTEGER),
    Attribute("Rows", 0x00280010, "US", _I, "rows", _K.INTEGER),
    Attribute("Columns", 0x00280011, "US", _I, "columns", _K.INTEGER),
    Attribute("NumberOfFrames", 0x00280008, "IS", _I, "number_of_frames", _K.INTEGER),
)
"""Every indexed attribute, in the order they are returned."""

COUNT_ATTRIBUTES: Final[dict[Level, tuple[tuple[str, int, str], ...]]] = {
    _S: (
        ("NumberOfStudyRelatedSeries", 0x00201206, "num_series"),
        ("NumberOfStudyRelatedInstances", 0x00201208, "num_instances"),
    ),
    _SE: (("NumberOfSeriesRelatedInstances", 0x00201209, "num_instances"),),
    _I: (),
}
"""Computed attributes returned at each level: keyword, tag and the count column (VR IS)."""

BY_KEYWORD: Final[dict[str, Attribute]] = {a.keyword: a for a in ATTRIBUTES}
_ORDER: Final = {_S: 0, _SE: 1, _I: 2}


def matchable_at(level: Level) -> dict[str, Attribute]:
    """Return the attributes a query at ``level`` can match on, by keyword.

    A query may match on its own level and every level above it (an instance query can
    match on StudyDate, PS3.18 §10.6.1.2.2), but not below it.
    """
    return {a.keyword: a for a in ATTRIBUTES if _ORDER[a.level] <= _ORDER[level]}


def attributes_for(level: Level, *, with_parents: bool) -> tuple[Attribute, ...]:
    """Return the attributes a result at ``level`` carries by default.

    Parameters
    ----------
    level:
        The query level.
    with_parents:
        Also the attributes of the levels above, as flat ``/series`` and ``/instances``
        queries return them (PS3.18 Table 10.6.3-3/-4).
    """
    wanted = _ORDER[level]
    return tuple(
        a
        for a in ATTRIBUTES
        if _ORDER[a.level] == wanted or (with_parents and _ORDER[a.level] < wanted)
    )
