"""Encode flat identifiers and command sets straight to bytes, without pydicom's writer.

A C-FIND answering thousands of studies sends thousands of small identifiers (a handful of
text elements each) and as many response command sets. pydicom's general writer costs
hundreds of microseconds for each of them (element objects, character-set lookups, a buffer
per element), which made broad searches slower than Orthanc's. The identifiers and command
sets here are *flat* (no sequences) and their elements have a known, unambiguous VR, so they
are encoded by a few lines of byte packing instead:

- elements in ascending tag order; the element header as the transfer syntax asks (Implicit
  VR: tag and 4-byte length; Explicit VR: tag, VR and a 2-byte length, or 2 reserved bytes
  and a 4-byte length for the VRs of PS3.5 Table 7.1-1);
- text values joined with ``\\``, encoded as ASCII, or as UTF-8 when the identifier says
  ``ISO_IR 192``, and padded to even length (UI with a NUL, other text with a space);
- binary values (US, UL, SS, SL, FL, FD) packed little endian.

Only Little Endian is encoded (the node accepts no Big Endian for queries); anything else
(a sequence, an ambiguous or unknown VR, another character set, a value type not listed)
makes :func:`encode_elements` return ``None`` and the caller falls back to pydicom. The
test suite checks the bytes against pydicom's writer for realistic answers.

References
----------
PS3.5 §7.1 (data element structure), §6.2 (VR padding), §6.1.2.5.3 (ISO_IR 192).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Final

from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

__all__ = ["EncodedIdentifier", "encode_dataset", "encode_elements", "identifier", "vr_of"]

_LONG_HEADER: Final = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UC", "UN", "UR", "UT"})
_TEXT: Final = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI"}
    | {"UR", "UT"}
)
_CHARSET_TEXT: Final = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_NUMBERS: Final = {"US": "H", "UL": "I", "SS": "h", "SL": "i", "FL": "f", "FD": "d"}
_UTF8: Final = "ISO_IR 192"
_SPECIFIC_CHARACTER_SET: Final = 0x00080005

Element = tuple[int, str, object]
"""One element to encode: (tag as an int, VR, value: None, str, int, float or a list)."""


def vr_of(tag: int) -> str | None:
    """The dictionary VR of ``tag`` when it is one this module encodes, else ``None``."""
    try:
        vr = str(dictionary_VR(tag))
    except KeyError:
        return None
    return vr if vr in _TEXT or vr in _NUMBERS else None


def _values(value: object) -> list[object]:
    if value is None:
        return []
    if isinstance(value, list | tuple | MultiValue):
        return list(value)
    return [value]


def _value_bytes(vr: str, value: object, text_codec: str) -> bytes | None:
    values = _values(value)
    if vr in _NUMBERS:
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            return None
        try:
            return struct.pack(f"<{len(values)}{_NUMBERS[vr]}", *values)
        except struct.error:
            return None
    if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in values):
        return None
    text = "\\".join(str(v) for v in values)
    try:
        raw = text.encode(text_codec if vr in _CHARSET_TEXT else "ascii")
    except UnicodeEncodeError:
        return None
    if len(raw) % 2:
        raw += b"\x00" if vr == "UI" else b" "
    return raw


def _header(tag: int, vr: str, length: int, implicit: bool) -> bytes | None:
    group_element = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    if implicit:
        return group_element + struct.pack("<I", length)
    if vr in _LONG_HEADER:
        return group_element + vr.encode("ascii") + b"\x00\x00" + struct.pack("<I", length)
    if length > 0xFFFF:
        return None
    return group_element + vr.encode("ascii") + struct.pack("<H", length)


def _text_codec(elements: Sequence[Element]) -> str | None:
    """The codec of the charset-dependent text: ASCII by default, UTF-8 for ISO_IR 192."""
    for tag, _vr, value in elements:
        if tag == _SPECIFIC_CHARACTER_SET:
            terms = [str(v).strip() for v in _values(value)]
            if not terms or terms == [""]:
                return "ascii"
            return "utf-8" if terms == [_UTF8] else None
    return "ascii"


def _encode(
    elements: Iterable[Element], implicit: bool
) -> tuple[bytes, list[tuple[int, str, bytes]], str] | None:
    """The encoded data set, each element's value bytes, and the text codec; or ``None``."""
    ordered = sorted(elements, key=lambda element: element[0])
    codec = _text_codec(ordered)
    if codec is None:
        return None
    parts: list[bytes] = []
    values: list[tuple[int, str, bytes]] = []
    for tag, vr, value in ordered:
        if vr not in _TEXT and vr not in _NUMBERS:
            return None
        raw = _value_bytes(vr, value, codec)
        if raw is None:
            return None
        header = _header(tag, vr, len(raw), implicit)
        if header is None:
            return None
        parts.append(header)
        parts.append(raw)
        values.append((tag, vr, raw))
    return b"".join(parts), values, codec


def encode_elements(elements: Iterable[Element], *, implicit: bool) -> bytes | None:
    """Encode flat ``elements`` as a Little Endian data set (Implicit or Explicit VR).

    Returns ``None`` when any element is outside what this module encodes (see the module
    documentation): the caller then encodes with pydicom.
    """
    encoded = _encode(elements, implicit)
    return None if encoded is None else encoded[0]


def encode_dataset(dataset: Dataset, *, implicit: bool) -> bytes | None:
    """Encode a flat pydicom ``dataset`` of plain elements, or ``None`` to fall back.

    Used for DIMSE command sets (always Implicit VR Little Endian): a handful of US, UL,
    UI, AE and LO elements. Raw (not yet decoded) elements, sequences and group length
    elements of groups other than 0000 fall back.
    """
    elements: list[Element] = []
    for tag, element in dataset._dict.items():  # noqa: SLF001 - no decoding of raw elements
        if isinstance(element, RawDataElement) or not isinstance(tag, BaseTag | int):
            return None
        vr = str(element.VR)
        if vr not in _TEXT and vr not in _NUMBERS:
            return None
        value = element.value
        if isinstance(value, bytes):
            return None
        elements.append((int(tag), vr, value))
    return encode_elements(elements, implicit=implicit)


class EncodedIdentifier(Dataset):
    """A response identifier encoded once, for one transfer syntax.

    It is a real :class:`~pydicom.dataset.Dataset` of raw elements whose original encoding is
    the negotiated one, so pydicom's writer (what pynetdicom calls for every yielded
    identifier) copies the value bytes without converting anything; and
    :mod:`dicomveil.dimse.fastpath`, when installed, hands pynetdicom :attr:`encoded`
    without calling the writer at all.
    """

    encoded: bytes
    """The whole identifier, encoded as :attr:`implicit` says (Little Endian)."""
    implicit: bool


def identifier(elements: Iterable[Element], *, implicit: bool) -> Dataset | None:
    """An :class:`EncodedIdentifier` of ``elements``, or ``None`` when they are not flat."""
    encoded = _encode(elements, implicit)
    if encoded is None:
        return None
    data, values, codec = encoded
    raw: dict[BaseTag, DataElement | RawDataElement] = {}
    for tag, vr, value in values:
        key = BaseTag(tag)
        raw[key] = RawDataElement(key, vr, len(value), value, 0, implicit, True, True, False)
    answer = EncodedIdentifier(raw)
    charset = convert_encodings(_UTF8) if codec == "utf-8" else default_encoding
    answer.set_original_encoding(implicit, True, charset)
    object.__setattr__(answer, "encoded", data)
    object.__setattr__(answer, "implicit", implicit)
    return answer
