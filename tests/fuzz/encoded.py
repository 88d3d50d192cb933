"""A small, forgiving walker and editor of encoded DICOM bytes, for the mutator.

It knows just enough of PS3.5 to find elements in Explicit and Implicit VR Little Endian
data (tags, VRs, length fields, values, items) so that a mutation can target one of them
precisely: change a length, a VR, a value, delete or insert an element. It never raises on
malformed data: a walk stops where the bytes stop making sense. It does not depend on
dicomveil (the code under test) and only on the standard library.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

__all__ = [
    "LONG_VRS",
    "UNDEFINED",
    "Element",
    "Layout",
    "delete_element",
    "encode_element",
    "layout",
    "set_value",
]

UNDEFINED: Final = 0xFFFFFFFF
LONG_VRS: Final = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
ITEM: Final = 0xFFFEE000
ITEM_END: Final = 0xFFFEE00D
SEQUENCE_END: Final = 0xFFFEE0DD
META_LENGTH: Final = 0x00020000
TRANSFER_SYNTAX: Final = 0x00020010
IMPLICIT_LE: Final = "1.2.840.10008.1.2"
BIG_ENDIAN: Final = "1.2.840.10008.1.2.2"
DEFLATED: Final = "1.2.840.10008.1.2.1.99"
_MAX_DEPTH: Final = 64


@dataclass(frozen=True, slots=True)
class Element:
    """Where one element sits in the bytes (offsets are absolute)."""

    tag: int
    vr: bytes | None
    """The two VR bytes (``None`` in Implicit VR)."""
    start: int
    """Offset of the tag."""
    length_at: int
    length_size: int
    value_at: int
    length: int
    """The length field's value (``UNDEFINED`` for undefined length)."""
    end: int
    """Offset just past the element (its delimiter included)."""


@dataclass(frozen=True, slots=True)
class Layout:
    """The top level of a Part 10 file: its meta elements, data set elements, syntax."""

    meta: tuple[Element, ...]
    elements: tuple[Element, ...]
    body_at: int
    """Offset of the first data set element."""
    transfer_syntax: str
    implicit: bool
    complete: bool
    """Whether the walk reached the end of the data."""

    @property
    def walkable(self) -> bool:
        """Whether the data set is Little Endian, not deflated (the walker's kind)."""
        return self.transfer_syntax not in (BIG_ENDIAN, DEFLATED)

    def find(self, tag: int) -> Element | None:
        """Return the top-level element ``tag`` (meta or data set), if present."""
        for element in (*self.meta, *self.elements):
            if element.tag == tag:
                return element
        return None


def _u16(data: bytes, at: int) -> int:
    return int(struct.unpack_from("<H", data, at)[0])


def _u32(data: bytes, at: int) -> int:
    return int(struct.unpack_from("<I", data, at)[0])


def _tag(data: bytes, at: int) -> int:
    return (_u16(data, at) << 16) | _u16(data, at + 2)


def _looks_like_vr(pair: bytes) -> bool:
    return len(pair) == 2 and all(65 <= b <= 90 for b in pair)


def _element(data: bytes, at: int, implicit: bool, depth: int) -> Element | None:
    """Read the element starting at ``at`` (``None`` where it cannot be read)."""
    if at + 8 > len(data):
        return None
    tag = _tag(data, at)
    vr: bytes | None = None
    if tag >> 16 == 0xFFFE or implicit:
        length_at, size = at + 4, 4
    else:
        vr = data[at + 4 : at + 6]
        if vr in LONG_VRS or not _looks_like_vr(vr):
            length_at, size = at + 8, 4
            if at + 12 > len(data):
                return None
        else:
            length_at, size = at + 6, 2
    length = _u32(data, length_at) if size == 4 else _u16(data, length_at)
    value_at = length_at + size
    if length != UNDEFINED:
        end = value_at + length
        if end > len(data):
            return None
    else:
        skipped = _skip_undefined(data, value_at, implicit, depth + 1)
        if skipped is None:
            return None
        end = skipped
    return Element(tag, vr, at, length_at, size, value_at, length, end)


def _skip_undefined(data: bytes, at: int, implicit: bool, depth: int) -> int | None:
    """Return the offset past the sequence delimiter of an undefined-length value."""
    if depth > _MAX_DEPTH:
        return None
    while at + 8 <= len(data):
        tag = _tag(data, at)
        if tag == SEQUENCE_END:
            return at + 8
        if tag != ITEM:
            return None
        length = _u32(data, at + 4)
        at += 8
        if length != UNDEFINED:
            at += length
            continue
        while True:  # an undefined-length item: its elements, up to the item delimiter
            if at + 8 > len(data):
                return None
            if _tag(data, at) == ITEM_END:
                at += 8
                break
            element = _element(data, at, implicit, depth + 1)
            if element is None:
                return None
            at = element.end
    return None


def _walk(data: bytes, at: int, implicit: bool, *, meta: bool) -> tuple[list[Element], int, bool]:
    elements: list[Element] = []
    while at < len(data):
        if meta and (at + 2 > len(data) or _u16(data, at) != 0x0002):
            return elements, at, False
        element = _element(data, at, implicit, 0)
        if element is None:
            return elements, at, False
        elements.append(element)
        at = element.end
    return elements, at, True


def layout(data: bytes) -> Layout:
    """Walk the top level of ``data`` (a Part 10 file, or a bare data set)."""
    at = 0
    meta: list[Element] = []
    syntax = ""
    if data[128:132] == b"DICM":
        meta, at, _ = _walk(data, 132, False, meta=True)
        for element in meta:
            if element.tag == TRANSFER_SYNTAX:
                raw = data[element.value_at : element.end]
                syntax = raw.rstrip(b"\0 ").decode("ascii", "replace")
    if not syntax:
        syntax = "1.2.840.10008.1.2.1" if _looks_like_vr(data[at + 4 : at + 6]) else IMPLICIT_LE
    implicit = syntax == IMPLICIT_LE
    if syntax in (BIG_ENDIAN, DEFLATED):
        return Layout(tuple(meta), (), at, syntax, implicit, False)
    elements, _, complete = _walk(data, at, implicit, meta=False)
    return Layout(tuple(meta), tuple(elements), at, syntax, implicit, complete)


def encode_element(tag: int, vr: bytes, value: bytes, *, implicit: bool) -> bytes:
    """Encode one element with a defined length (``value`` is used as given)."""
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    if implicit:
        return head + struct.pack("<I", len(value)) + value
    if vr in LONG_VRS:
        return head + vr + b"\0\0" + struct.pack("<I", len(value)) + value
    return head + vr + struct.pack("<H", len(value) & 0xFFFF) + value


def _fix_meta_length(data: bytes) -> bytes:
    """Rewrite (0002,0000) to the meta group's actual length, when there is one."""
    found = layout(data)
    group = found.find(META_LENGTH)
    if group is None or group.length != 4 or not found.meta:
        return data
    total = found.meta[-1].end - group.end
    return data[: group.value_at] + struct.pack("<I", total) + data[group.value_at + 4 :]


def set_value(data: bytes, tag: int, value: bytes, vr: bytes, *, pad: bytes = b" ") -> bytes:
    """Give element ``tag`` the bytes ``value`` (padded to even length), inserting it where it
    belongs when absent. Meta elements keep the group length right."""
    if len(value) % 2:
        value += pad
    found = layout(data)
    implicit = found.implicit and tag >> 16 != 0x0002
    element = found.find(tag)
    if element is not None:
        keep_vr = element.vr if element.vr is not None else vr
        encoded = encode_element(tag, keep_vr, value, implicit=element.vr is None)
        data = data[: element.start] + encoded + data[element.end :]
    else:
        pool = found.meta if tag >> 16 == 0x0002 else found.elements
        after = next((e for e in pool if e.tag > tag), None)
        if after is not None:
            at = after.start
        elif pool:
            at = pool[-1].end
        else:
            at = found.body_at
        data = data[:at] + encode_element(tag, vr, value, implicit=implicit) + data[at:]
    return _fix_meta_length(data) if tag >> 16 == 0x0002 else data


def delete_element(data: bytes, tag: int) -> bytes:
    """Remove the top-level element ``tag`` (the data unchanged when absent)."""
    element = layout(data).find(tag)
    if element is None:
        return data
    data = data[: element.start] + data[element.end :]
    return _fix_meta_length(data) if tag >> 16 == 0x0002 else data
