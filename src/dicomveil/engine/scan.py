"""Looks at a dataset before it is changed: identifying values for cleaning, pixel risks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache

from pydicom import config
from pydicom.charset import default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from dicomveil.engine.report import Report
from dicomveil.errors import UnsupportedInputError
from dicomveil.profile.options import Option
from dicomveil.profile.policy import Policy
from dicomveil.profile.table import row_for

__all__ = ["check_pixels", "collect_identifiers"]

_CHARSET = BaseTag(0x00080005)
_IDENTIFIER_VRS = frozenset({"LO", "SH", "AE", "LT", "ST", "UC", "CS"})
_COLLECTED_VRS = _IDENTIFIER_VRS | {"PN", "DA", "DT", "SQ"}
_DESCRIPTOR_OPTIONS = frozenset({"clean-descriptors", "clean-structured-content", "clean-graphics"})
#: SOP classes that often carry burned-in text: ultrasound and secondary capture.
_RISKY_SOP_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.6.",  # Ultrasound Image / Multi-frame
    "1.2.840.10008.5.1.4.1.1.3.",  # Ultrasound (retired)
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture family
)
_RISKY_MODALITIES = frozenset({"US", "OT", "SC", "XC", "ES", "DOC"})


@cache
def _is_identifier(tag: int) -> bool:
    row = row_for(tag)
    if row is None or row.basic == "K":
        return False
    option_names = {name for name, _ in row.options}
    return not (option_names & _DESCRIPTOR_OPTIONS)


def _may_identify(tag: BaseTag, vr: str | None, deferred: bool) -> bool:
    """Whether a raw element can hold what :func:`collect_identifiers` collects, told from
    its tag and VR without converting it (most elements of a header cannot).

    Only a sequence or a collected VR can; a private element only as a sequence, which an
    implicit or unknown VR may turn out to be (a deferred value never is one). A VR that
    pydicom may replace (implicit, ``UN``) is looked up as pydicom would.
    """
    if vr == "SQ":
        return True
    if tag.is_private:
        return vr in (None, "UN") and not deferred
    if vr is None or vr == "UN":
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return False  # not in the dictionary: pydicom reads it as UN, never collected
    if vr in _IDENTIFIER_VRS:
        return _is_identifier(int(tag))
    return vr in _COLLECTED_VRS


def _elements(item: Dataset) -> Iterator[DataElement]:
    """The elements of ``item`` that may identify, in its own order, converted without
    changing ``item``.

    Reading every element through ``item[tag]`` would store the converted elements, and the
    writer would then encode all of them anew instead of copying the bytes of those the
    policy keeps (and the byte-level fast path would no longer give the same output).
    Elements that cannot hold what is collected are not converted at all (a large one, such
    as a vendor's private blob, is then never read into memory).
    """
    encoding = item.original_character_set or item._character_set  # noqa: SLF001
    for tag, elem in list(item._dict.items()):  # noqa: SLF001 - read, not converted in place
        if not isinstance(elem, RawDataElement):
            yield elem
            continue
        deferred = elem.value is None and elem.length != 0
        if not _may_identify(tag, elem.VR, deferred):
            continue
        if deferred:
            yield item[tag]  # read as the dataset reads it
            continue
        charset = default_encoding if tag == _CHARSET else encoding
        try:
            yield convert_raw_data_element(elem, encoding=charset, ds=item)
        except Exception:  # noqa: BLE001 - pydicom cannot decode it: read leniently
            lenient = _lenient(tag, elem)
            if lenient is not None:
                yield lenient


def _lenient(tag: BaseTag, elem: RawDataElement) -> DataElement | None:
    """A text element pydicom cannot decode (a name in an ISO 2022 character set with a
    broken escape sequence), read byte by byte as Latin-1: what identifies in it is still
    collected. Only collected here: the walk reads, or refuses, the element itself."""
    vr = elem.VR if elem.VR not in (None, "UN") else _dictionary_vr(tag)
    if vr not in _COLLECTED_VRS or vr == "SQ" or not isinstance(elem.value, bytes):
        return None
    text = elem.value.decode("latin-1").strip(" \0")
    values = text.split("\\") if vr != "LT" and vr != "ST" else [text]
    value = values if len(values) > 1 else text
    return DataElement(tag, vr, value, validation_mode=config.IGNORE)


def _dictionary_vr(tag: BaseTag) -> str:
    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return "UN"


def collect_identifiers(ds: Dataset) -> dict[str, list[str]]:
    """Return the identifying values of ``ds`` (every depth) for a :class:`Scrubber`.

    Names are every PN value; dates every DA value and the date part of every DT value;
    identifiers the string values of attributes the Basic Profile does not keep and that are
    not themselves descriptors (IDs, addresses, institution and station names, ...).
    """
    names: list[str] = []
    identifiers: list[str] = []
    dates: list[str] = []

    def visit(item: Dataset) -> None:
        for elem in _elements(item):
            vr = elem.VR
            value = elem.value
            if vr == "SQ" and isinstance(value, Sequence):
                for child in value:
                    visit(child)
                continue
            if value is None or value == "" or elem.tag.is_private:
                continue
            values = list(value) if elem.VM > 1 else [value]
            if vr == "PN":
                names.extend(str(v) for v in values)
                names.extend(_shifted_runs(item, elem.tag, values))
            elif vr == "DA":
                dates.extend(str(v) for v in values)
            elif vr == "DT":
                dates.extend(str(v)[:8] for v in values)
            elif vr in _IDENTIFIER_VRS and _is_identifier(int(elem.tag)):
                identifiers.extend(str(v) for v in values)

    visit(ds)
    return {"names": names, "identifiers": identifiers, "dates": dates}


_ISO2022_ESCAPE = re.compile(rb"\x1b[\x20-\x2f]*[\x30-\x7e]?")
_LETTER_RUN = re.compile(rb"[A-Za-z]{4,}")


def _shifted_runs(item: Dataset, tag: BaseTag, values: list[object]) -> list[str]:
    """Words of a name that its character set shifted away: a stray ISO 2022 escape
    (``ESC $ B`` before ASCII letters) makes pydicom decode the name as other characters,
    while free text of the same file still holds it in ASCII. The runs of four or more
    ASCII letters of the name's bytes (escape sequences removed) that its decoded form lacks
    are names too. Only names whose bytes hold an escape are looked at."""
    raw = item.get_item(tag)
    data = raw.value if isinstance(raw, RawDataElement) else None
    if not isinstance(data, bytes) or b"\x1b" not in data:
        return []
    decoded = " ".join(str(v) for v in values).lower()
    runs = (r.decode("ascii") for r in _LETTER_RUN.findall(_ISO2022_ESCAPE.sub(b" ", data)))
    return [run for run in runs if run.lower() not in decoded]


def check_pixels(
    ds: Dataset, policy: Policy, has_pixels: bool, report: Report, *, pixels_checked: bool = False
) -> None:
    """Refuse or flag images whose pixels may show identifying text.

    ``pixels_checked`` says the caller has examined the pixels for burned-in text (and filled
    what was found: :mod:`dicomveil.redaction`) or, by policy, trusts the image's own
    Burned In Annotation ``NO``. Under clean-pixel-data an image whose pixels were not
    checked is refused: it is never passed through with its text.

    Raises
    ------
    UnsupportedInputError
        BurnedInAnnotation is YES and the policy does not allow it, or the policy asks for
        clean-pixel-data and the pixels were not checked.
    """
    if not has_pixels:
        return
    if Option.CLEAN_PIXEL_DATA in policy.options:
        if not pixels_checked:
            raise UnsupportedInputError(
                "clean-pixel-data: the pixels were not examined for burned-in text: refused"
            )
        return
    burned_in = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if burned_in == "YES":
        if not policy.allow_burned_in_annotation:
            raise UnsupportedInputError(
                "BurnedInAnnotation is YES: the pixels show identifying text; refused "
                "(set allow_burned_in_annotation in a policy file to accept such images)"
            )
        report.flag("burned-in-annotation-allowed")
        return
    sop_class = str(ds.get("SOPClassUID", "") or "")
    modality = str(ds.get("Modality", "") or "").strip().upper()
    risky = modality in _RISKY_MODALITIES or sop_class.startswith(_RISKY_SOP_PREFIXES)
    if risky and burned_in != "NO":
        report.flag("possible-burned-in-annotation")
