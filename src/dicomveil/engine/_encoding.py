"""Encoding the few values the engine writes itself, as the dicomio writer encodes them.

The byte-level fast path (:mod:`dicomveil.engine.encoded`) emits the elements it changes
directly. Every value here is ASCII text, a binary zero or empty, and is encoded exactly as
:func:`dicomveil.dicomio.write_instance` encodes the pydicom element the reference engine
would have set (tests compare the two for every VR): text padded to even length with a space
(a NUL for UI), numbers packed little endian, everything else empty.

References
----------
DICOM PS3.5 section 6.2 (value representations), section 7.1 (data element encoding).
"""

from __future__ import annotations

import struct
from typing import Final

from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

from dicomveil import __version__
from dicomveil.engine.values import dummy_value
from dicomveil.profile.options import BASIC_PROFILE_CODE, CID_7050, Option
from dicomveil.profile.policy import Policy
from dicomveil.profile.table import EDITION

__all__ = [
    "LONG_VRS",
    "VR_NAMES",
    "dummy_bytes",
    "element",
    "method_elements",
    "text_bytes",
]

LONG_VRS: Final = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_32)
"""VRs whose explicit VR header has a 4-byte length (PS3.5 Table 7.1-1)."""
VR_NAMES: Final = {str(vr).encode("ascii"): str(vr) for vr in VR if len(str(vr)) == 2}
"""The VR of each 2-byte explicit VR code."""

_SHORT = struct.Struct("<HH2sH").pack
_LONG = struct.Struct("<HH2sHL").pack
_IMPLICIT = struct.Struct("<HHL").pack
_NUMBERS: Final = {
    "US": "<H", "SS": "<h", "UL": "<L", "SL": "<l", "UV": "<Q", "SV": "<q", "FL": "<f", "FD": "<d"
}  # fmt: skip
#: String VRs whose dummy is written as its text (DS and IS as pydicom formats the number).
_TEXT_VRS: Final = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UR", "UT"}
)


def element(tag: int, vr: str, value: bytes, implicit: bool) -> bytes:
    """Return the encoded element ``tag`` with ``value`` (already padded to even length).

    Raises
    ------
    ValueError
        When the value does not fit a 2-byte length field (never for the engine's values).
    """
    group, elem = tag >> 16, tag & 0xFFFF
    if implicit:
        return _IMPLICIT(group, elem, len(value)) + value
    if vr in LONG_VRS:
        return _LONG(group, elem, vr.encode("ascii"), 0, len(value)) + value
    if len(value) > 0xFFFF:
        raise ValueError("value too long for a short explicit VR header")
    return _SHORT(group, elem, vr.encode("ascii"), len(value)) + value


def text_bytes(text: str, vr: str) -> bytes:
    """Return ASCII ``text`` padded to even length (NUL for UI, space otherwise)."""
    data = text.encode("ascii")
    if len(data) & 1:
        data += b"\0" if vr == "UI" else b" "
    return data


def _dummy(vr: str) -> bytes:
    value = dummy_value(vr)
    if vr in _TEXT_VRS and isinstance(value, str):
        return text_bytes(value, vr)
    if vr in _NUMBERS and isinstance(value, int | float):
        return struct.pack(_NUMBERS[vr], value)
    return b""


_DUMMIES: dict[str, bytes] = {}


def dummy_bytes(vr: str) -> bytes:
    """Return the encoded dummy value of ``vr`` (Basic Profile action D)."""
    found = _DUMMIES.get(vr)
    if found is None:
        found = _DUMMIES[vr] = _dummy(vr)
    return found


def _code_item(value: str, meaning: str, implicit: bool) -> bytes:
    return b"".join(
        (
            element(0x00080100, "SH", text_bytes(value, "SH"), implicit),
            element(0x00080102, "SH", text_bytes("DCM", "SH"), implicit),
            element(0x00080104, "LO", text_bytes(meaning, "LO"), implicit),
        )
    )


def _sequence(tag: int, items: list[bytes], implicit: bool, undefined: bool) -> bytes:
    body = b"".join(_IMPLICIT(0xFFFE, 0xE000, len(item)) + item for item in items)
    group, elem = tag >> 16, tag & 0xFFFF
    length = 0xFFFFFFFF if undefined else len(body)
    end = _IMPLICIT(0xFFFE, 0xE0DD, 0) if undefined else b""
    if implicit:
        return _IMPLICIT(group, elem, length) + body + end
    return _LONG(group, elem, b"SQ", 0, length) + body + end


_TEMPORAL: Final = {"keep": "UNMODIFIED", "shift": "MODIFIED", "remove": "REMOVED"}


def method_elements(
    policy: Policy, date_mode: str, implicit: bool, *, undefined: bool = False
) -> list[tuple[int, bytes]]:
    """Return the encoded attributes :func:`~dicomveil.engine.method.add_method_attributes`
    sets, as ``(tag, bytes)`` in ascending tag order.

    ``undefined`` gives the code sequence the undefined length it keeps when it replaces the
    items of a sequence read with undefined length (pydicom sets the value of the element).
    """
    applied = sorted(
        (o for o in policy.options if o is not Option.CLEAN_PIXEL_DATA and o in CID_7050),
        key=lambda o: CID_7050[o],
    )
    method = "\\".join(
        [
            f"dicomveil {__version__}",
            f"PS3.15 {EDITION} Basic Application Confidentiality Profile",
            *(option.value for option in applied),
        ]
    )
    codes = [BASIC_PROFILE_CODE, *(CID_7050[option] for option in applied)]
    items = [_code_item(value, meaning, implicit) for value, meaning in codes]
    return [
        (0x00120062, element(0x00120062, "CS", text_bytes("YES", "CS"), implicit)),
        (0x00120063, element(0x00120063, "LO", text_bytes(method, "LO"), implicit)),
        (0x00120064, _sequence(0x00120064, items, implicit, undefined)),
        (0x00280303, element(0x00280303, "CS", text_bytes(_TEMPORAL[date_mode], "CS"), implicit)),
    ]
