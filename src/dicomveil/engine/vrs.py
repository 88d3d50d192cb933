"""Elements whose value representation in the file is not the data dictionary's.

A file may label an attribute with a VR the data dictionary does not give it (a
Comments on the Scheduled Procedure Step sent as ``LO`` or ``OB``, a name sent as ``US``) or
give a binary number a length its VR cannot hold. The rules of the profile are chosen by the
dictionary's VR, never the file's (a person name is a person name whatever its label), and
no element leaves the engine with a VR it cannot be read as.

:func:`repair_vrs` runs before anything reads the data set: every public element the
dictionary knows is read as the dictionary's VR when its label is another one (its bytes are
kept: text stays text), and an element whose bytes cannot be read as that VR (a binary
number of the wrong length, a sequence labelled as text) is emptied. Each repair is flagged
in the report, by keyword. Private creators are always ``LO``; other private elements and
elements the dictionary does not know keep their label (the dictionary has no say on them;
the profile removes them unless a rule keeps them).

The byte-level fast path (:mod:`dicomveil.engine.encoded`) leaves every such instance to the
reference path.
"""

from __future__ import annotations

from functools import cache
from typing import Final

from pydicom import config
from pydicom.charset import default_encoding
from pydicom.datadict import dictionary_keyword, dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from dicomveil.engine.report import Report
from dicomveil.engine.values import empty_value

__all__ = [
    "NUMBER_SIZES",
    "dictionary_vrs",
    "mislabelled",
    "needs_repair",
    "repair_vrs",
    "unreadable_length",
]

#: Bytes per value of the VRs whose values pydicom unpacks as numbers.
NUMBER_SIZES: Final = {
    "US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "AT": 4, "FD": 8, "SV": 8, "UV": 8
}  # fmt: skip
_CHARSET: Final = BaseTag(0x00080005)


@cache
def dictionary_vrs(tag: int) -> tuple[str, ...]:
    """The VRs the data dictionary allows for ``tag`` (``()`` when it does not say: private
    data elements, group length, unknown, or ``UN`` in the dictionary). A private creator
    is always ``LO`` (PS3.5 7.8.1)."""
    if tag >> 16 & 1:
        return ("LO",) if 0x0010 <= tag & 0xFFFF <= 0x00FF and tag >> 16 > 0x0008 else ()
    if not tag & 0xFFFF:
        return ()
    try:
        found = dictionary_VR(tag)
    except KeyError:
        return ()
    allowed = tuple(found.split(" or "))
    return () if "UN" in allowed else allowed


@cache
def mislabelled(tag: int, vr: str | None) -> str | None:
    """The VR an element must be read as when its label ``vr`` is not one the data
    dictionary allows for ``tag``, else ``None``.

    An implicit VR (``None``) or ``UN`` is no label: pydicom reads the value as the
    dictionary's VR already.
    """
    if vr is None or vr == "UN":
        return None
    allowed = dictionary_vrs(tag)
    if not allowed or vr in allowed:
        return None
    return allowed[0]


def unreadable_length(vr: str, length: int) -> bool:
    """Whether a value of ``length`` bytes cannot be read as binary numbers of ``vr``."""
    size = NUMBER_SIZES.get(vr)
    return size is not None and length % size != 0


def needs_repair(tag: int, vr: str | None, length: int) -> bool:
    """Whether :func:`repair_vrs` changes an element of ``tag``, label ``vr`` (``None``:
    implicit) and value ``length`` (for the fast path, which leaves such instances)."""
    size = _repair_size(tag, vr)
    return size < 0 or length % size != 0


@cache
def _repair_size(tag: int, vr: str | None) -> int:
    """-1 when the label is wrong, else the size a value's length must be a multiple of."""
    if mislabelled(tag, vr) is not None:
        return -1
    allowed = dictionary_vrs(tag)
    if not allowed:
        return 1
    return NUMBER_SIZES.get(vr if vr not in (None, "UN") else allowed[0], 1)


def _label(tag: int) -> str:
    if tag >> 16 & 1:
        return "private creator"  # the only private elements repaired
    return dictionary_keyword(tag)  # only dictionary tags are repaired


def _as_sequence_vr(tag: int, vr: str | None) -> bool:
    """Whether pydicom reads the raw element as a sequence."""
    if vr == "SQ":
        return True
    return vr in (None, "UN") and dictionary_vrs(tag) == ("SQ",)


def repair_vrs(ds: Dataset, report: Report, depth: int = 0) -> None:
    """Read every mislabelled element of ``ds`` (every depth) as its dictionary VR.

    Sequences are read (pydicom converts them; the engine walks them anyway); a sequence
    that cannot be read is left as it is, for the walk to decide (it removes it, or fails
    with a value-free error).
    """
    elements = ds._dict  # noqa: SLF001 - raw elements are inspected, not converted
    for key, elem in list(elements.items()):
        tag = int(key)
        if isinstance(elem, RawDataElement):
            vr = elem.VR
            wanted = mislabelled(tag, vr)
            if wanted is not None:
                _relabel(ds, key, elem, wanted, report)
                continue
            effective = vr if vr not in (None, "UN") else (dictionary_vrs(tag) or ("UN",))[0]
            if elem.value is not None and unreadable_length(effective, len(elem.value)):
                if dictionary_vrs(tag):
                    _empty(ds, key, effective, report)
                continue
            if not _as_sequence_vr(tag, vr):
                continue
            try:
                value = ds[key].value
            except Exception:  # noqa: BLE001 - left raw: the walk removes or refuses it
                continue
        else:
            value = elem.value
        if isinstance(value, Sequence) and depth < 64:
            for item in value:
                repair_vrs(item, report, depth + 1)


def _relabel(ds: Dataset, key: BaseTag, elem: RawDataElement, vr: str, report: Report) -> None:
    """Replace ``elem`` by its value read as ``vr``, or by an empty value of ``vr``."""
    tag = int(key)
    # A sequence's items are neither text nor numbers: only a name is read from them (as
    # text: the name must be known to clean descriptions, and is never kept as it is).
    readable = (
        elem.value is not None
        and (elem.VR != "SQ" or vr == "PN")
        and not unreadable_length(vr, len(elem.value))
    )
    converted = _converted(ds, key, elem._replace(VR=vr)) if readable else None
    if converted is None:
        _empty(ds, key, vr, report)
        return
    ds._dict[key] = converted  # noqa: SLF001 - written anew, with the right VR
    report.flag(f"{_label(tag)}: value representation not the dictionary's: read as {vr}")


def _converted(ds: Dataset, key: BaseTag, elem: RawDataElement) -> DataElement | None:
    """``elem`` read as pydicom reads it, or ``None`` when pydicom cannot."""
    encoding = default_encoding if key == _CHARSET else ds.original_character_set
    try:
        return convert_raw_data_element(
            elem,
            encoding=encoding or ds._character_set,
            ds=ds,  # noqa: SLF001
        )
    except Exception:  # noqa: BLE001 - whatever pydicom raises, the value is not read
        return None


def _empty(ds: Dataset, key: BaseTag, vr: str, report: Report) -> None:
    ds._dict[key] = DataElement(key, vr, empty_value(vr), validation_mode=config.IGNORE)  # noqa: SLF001
    report.flag(f"{_label(int(key))}: value not readable as {vr}: emptied")
