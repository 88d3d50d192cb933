"""Fast, bounded scanning of encoded DICOM data elements.

The scanner walks the top level of a data set and builds pydicom
:class:`~pydicom.dataelem.RawDataElement` objects directly (pydicom converts them lazily
when they are accessed), which is several times faster than pydicom's generic reader.
Nested sequences are walked structurally, without building objects, so that a wrong
length anywhere is reported at read time. Positions are absolute offsets in the source
(the file, or the inflated stream of a deflated data set).

References
----------
PS3.5 section 7.1 (data elements), 7.5 (nesting of data sets), A.4 (encapsulation).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from struct import Struct
from typing import Final

from pydicom.datadict import DicomDictionary, _dictionary_vr_fast
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

from dicomveil.dicomio._model import PIXEL_DATA_TAGS
from dicomveil.errors import MalformedInputError, UnsupportedInputError

__all__ = ["ScanResult", "Window", "element_header", "pixel_extent", "scan_dataset"]

UNDEFINED: Final = 0xFFFFFFFF
ITEM: Final = 0xFFFEE000
ITEM_DELIMITER: Final = 0xFFFEE00D
SEQUENCE_DELIMITER: Final = 0xFFFEE0DD
CHARSET_TAG: Final = 0x00080005
MAX_DEPTH: Final = 64

_LONG_VRS: Final = frozenset(str(vr).encode("ascii") for vr in EXPLICIT_VR_LENGTH_32)
_VR_NAMES: Final = {str(vr).encode("ascii"): str(vr) for vr in VR if len(str(vr)) == 2}
_FRAGMENT_VRS: Final = frozenset({b"OB", b"OW", b"OF", b"OD", b"OL", b"OV"})
_STRUCTS: Final = {
    little: (
        Struct("<HHL" if little else ">HHL"),
        Struct("<HH2sH" if little else ">HH2sH"),
        Struct("<L" if little else ">L"),
    )
    for little in (True, False)
}


def tag_name(tag: int) -> str:
    """Return ``(gggg,eeee)`` for `tag` (tags are safe in messages; values never are)."""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


class Window:
    """A read-only view of part of a byte source, refilled on demand.

    Parameters
    ----------
    fd
        File descriptor to read from with ``os.pread``, or ``None`` when `buf` holds the
        whole source (an inflated data set).
    size
        Size of the source in bytes.
    buf, base
        Bytes already read and the source offset of their first byte.
    """

    __slots__ = ("base", "buf", "chunk", "fd", "size")

    def __init__(self, fd: int | None, size: int, buf: bytes = b"", base: int = 0) -> None:
        self.fd = fd
        self.size = size
        self.buf = buf
        self.base = base
        self.chunk = 64 * 1024

    def load(self, pos: int, n: int) -> None:
        """Make the window cover ``[pos, pos + n)``, reading ahead in growing chunks."""
        if pos + n > self.size or self.fd is None or pos < 0:
            raise MalformedInputError("truncated: the data ends inside an element")
        want = min(max(n, self.chunk), self.size - pos)
        data = os.pread(self.fd, want, pos)
        if len(data) < n:
            raise MalformedInputError("truncated: the file shrank while it was read")
        self.buf, self.base = data, pos
        self.chunk = min(self.chunk * 2, 1024 * 1024)

    def take(self, pos: int, n: int) -> bytes:
        """Return the `n` bytes at `pos` (loading them into the window if needed)."""
        rel = pos - self.base
        if rel < 0 or rel + n > len(self.buf):
            self.load(pos, n)
            rel = 0
        return self.buf[rel : rel + n]

    def peek(self, pos: int, n: int) -> bytes:
        """Return the `n` bytes at `pos` without moving the window (for sparse reads)."""
        rel = pos - self.base
        if 0 <= rel and rel + n <= len(self.buf):
            return self.buf[rel : rel + n]
        if self.fd is None or pos + n > self.size:
            raise MalformedInputError("truncated: the data ends inside an element")
        data = os.pread(self.fd, n, pos)
        if len(data) < n:
            raise MalformedInputError("truncated: the file shrank while it was read")
        return data

    def is_zero(self, pos: int, end: int) -> bool:
        """Return whether every byte in ``[pos, end)`` is zero (read in 1 MiB steps)."""
        while pos < end:
            n = min(end - pos, 1024 * 1024)
            if self.peek(pos, n).count(0) != n:
                return False
            pos += n
        return True


def element_header(
    win: Window, pos: int, end: int, implicit: bool, little: bool
) -> tuple[int, bytes | None, int, int]:
    """Decode the element header at `pos`: ``(tag, vr or None, length, header length)``.

    In an explicit VR data set an element whose VR bytes are not letters is read as
    implicit VR (some writers switch inside sequences); its VR is then ``None``.
    """
    if pos + 8 > end:
        raise MalformedInputError("truncated: an element header is cut short")
    implicit_s, explicit_s, long_s = _STRUCTS[little]
    head = win.take(pos, 8)
    if not implicit:
        group, elem, vr, length = explicit_s.unpack(head)
        tag = group << 16 | elem
        if vr in _LONG_VRS:
            if pos + 12 > end:
                raise MalformedInputError("truncated: an element header is cut short")
            return tag, vr, long_s.unpack(win.take(pos + 8, 4))[0], 12
        if vr in _VR_NAMES:
            return tag, vr, length, 8
        if group != 0xFFFE and b"AA" <= vr <= b"ZZ":
            raise MalformedInputError(f"element {tag_name(tag)} has an unknown VR")
    group, elem, length = implicit_s.unpack(head)
    return group << 16 | elem, None, length, 8


def _is_sequence(tag: int, vr: bytes | None) -> bool:
    if vr is not None:
        return vr == b"SQ"
    try:
        return _dictionary_vr_fast(tag) == "SQ"
    except KeyError:
        return False


def walk_items(
    win: Window,
    pos: int,
    end: int,
    implicit: bool,
    little: bool,
    *,
    undefined: bool,
    fragments: bool,
    depth: int,
) -> int:
    """Walk a sequence (or encapsulated) value from `pos`; return the position after it.

    With `undefined` the value ends with a Sequence Delimitation Item and `end` is only
    the hard limit; otherwise the items must fill ``[pos, end)`` exactly. Fragments are
    opaque and only their headers are read (sparsely, so that walking gigabytes of
    encapsulated pixel data reads a few bytes per fragment); the contents of sequence
    items are walked as data sets.
    """
    unpack = _STRUCTS[little][0].unpack
    read = win.peek if fragments else win.take
    while True:
        if pos == end and not undefined:
            return pos
        if pos + 8 > end:
            raise MalformedInputError("truncated or wrong length: a sequence is cut short")
        group, elem, length = unpack(read(pos, 8))
        tag = group << 16 | elem
        pos += 8
        if tag == SEQUENCE_DELIMITER and undefined:
            return pos
        if tag != ITEM:
            raise MalformedInputError("wrong element length: a sequence holds a non-item")
        if length == UNDEFINED:
            if fragments:
                raise MalformedInputError("encapsulated fragment with undefined length")
            pos = walk_elements(win, pos, end, implicit, little, undefined=True, depth=depth + 1)
            continue
        if pos + length > end:
            raise MalformedInputError("truncated or wrong length: an item exceeds its sequence")
        if not fragments:
            walk_elements(
                win, pos, pos + length, implicit, little, undefined=False, depth=depth + 1
            )
        pos += length


def walk_elements(
    win: Window, pos: int, end: int, implicit: bool, little: bool, *, undefined: bool, depth: int
) -> int:
    """Walk the elements of one sequence item; return the position after the item."""
    if depth > MAX_DEPTH:
        raise UnsupportedInputError(f"sequences are nested more than {MAX_DEPTH} levels deep")
    while True:
        if pos == end and not undefined:
            return pos
        tag, vr, length, hdr = element_header(win, pos, end, implicit, little)
        if tag == ITEM_DELIMITER and undefined:
            return pos + 8
        if tag >> 16 == 0xFFFE:
            raise MalformedInputError("wrong element length: misplaced item in a sequence item")
        pos += hdr
        if length == UNDEFINED:
            is_fragments = vr in _FRAGMENT_VRS or (vr is None and tag in PIXEL_DATA_TAGS)
            pos = walk_items(
                win,
                pos,
                end,
                implicit or vr == b"UN",
                little,
                undefined=True,
                fragments=is_fragments,
                depth=depth,
            )
            continue
        if pos + length > end:
            raise MalformedInputError(
                f"truncated or wrong length: element {tag_name(tag)} exceeds its item"
            )
        if _is_sequence(tag, vr):
            walk_items(
                win,
                pos,
                pos + length,
                implicit,
                little,
                undefined=False,
                fragments=False,
                depth=depth,
            )
        pos += length


@dataclass(slots=True)
class ScanResult:
    """What :func:`scan_dataset` found.

    Attributes
    ----------
    elements
        The top-level elements by tag.
    stop
        Position of the pixel data element, or of the end of the scanned range.
    pixel_tag
        The pixel data tag the scan stopped at, or ``None``.
    padding
        Number of zero bytes at the end of the range that were skipped.
    kept
        Number of value bytes held in memory.
    """

    elements: dict[BaseTag, RawDataElement]
    stop: int = 0
    pixel_tag: int | None = None
    padding: int = 0
    kept: int = 0


_new_tuple = tuple.__new__


def _raw(
    tag: BaseTag, vr: str | None, length: int, value: bytes | None, at: int, imp: bool, lit: bool
) -> RawDataElement:
    # NamedTuple.__new__ is Python code; building the tuple directly is twice as fast.
    return _new_tuple(RawDataElement, (tag, vr, length, value, at, imp, lit, True, False))  # type: ignore[no-any-return]


def _budget(kept: int, budget: int) -> None:
    if kept > budget:
        raise UnsupportedInputError(f"header larger than {budget >> 20} MiB")


def _scan_one(
    win: Window,
    pos: int,
    end: int,
    implicit: bool,
    little: bool,
    result: ScanResult,
    stop_at_pixels: bool,
    defer_size: int,
    budget: int,
) -> int | None:
    """Scan the element at `pos` the general way; return the next position or ``None`` to stop.

    Handles everything the fast loop of :func:`scan_dataset` does not: window refills,
    sequences (walked for validation), undefined lengths, deferred values, pixel data,
    zero padding and the implicit VR elements some writers put in explicit data sets.
    """
    if pos + 8 > end:
        if win.is_zero(pos, end):
            result.padding = end - pos
            return None
        raise MalformedInputError("truncated: an element header is cut short")
    tag, vr, length, hdr = element_header(win, pos, end, implicit, little)
    elem_implicit = implicit or vr is None
    if tag == 0 and win.is_zero(pos, end):
        result.padding = end - pos
        return None
    if tag >> 16 == 0xFFFE:
        raise MalformedInputError("wrong element length: item or delimiter at top level")
    if stop_at_pixels and tag in PIXEL_DATA_TAGS:
        result.pixel_tag = tag
        return None
    vpos = pos + hdr
    vr_name = None if vr is None else _VR_NAMES[vr]
    btag = BaseTag(tag)
    if length == UNDEFINED:
        if vr is None and tag not in PIXEL_DATA_TAGS and not _is_sequence(tag, None):
            first = win.peek(vpos, 4)
            vr_name = "SQ" if first in (b"\xfe\xff\x00\xe0", b"\xff\xfe\xe0\x00") else None
        after = walk_items(
            win,
            vpos,
            end,
            elem_implicit or vr == b"UN",
            little,
            undefined=True,
            fragments=vr in _FRAGMENT_VRS or (vr is None and tag in PIXEL_DATA_TAGS),
            depth=0,
        )
        size = after - 8 - vpos
        result.kept += size
        _budget(result.kept, budget)
        result.elements[btag] = _raw(
            btag, vr_name, length, win.take(vpos, size), vpos, elem_implicit, little
        )
        return after
    vend = vpos + length
    if vend > end:
        raise MalformedInputError(
            f"truncated or wrong length: element {tag_name(tag)} exceeds the data"
        )
    is_sq = _is_sequence(tag, vr)
    if length > defer_size and tag != CHARSET_TAG and not is_sq:
        result.elements[btag] = _raw(btag, vr_name, length, None, vpos, elem_implicit, little)
        return vend
    result.kept += length
    _budget(result.kept, budget)
    value = win.take(vpos, length)
    if is_sq:
        walk_items(
            win, vpos, vend, elem_implicit, little, undefined=False, fragments=False, depth=0
        )
    result.elements[btag] = _raw(btag, vr_name, length, value, vpos, elem_implicit, little)
    return vend


_SHORT_VRS: Final = frozenset(_VR_NAMES) - _LONG_VRS


def _fast_explicit(
    elements: dict[BaseTag, RawDataElement],
    buf: bytes,
    base: int,
    pos: int,
    bound: int,
    little: bool,
    defer_size: int,
) -> int:
    """Add explicit VR elements from `buf` while they are simple; return where it stopped.

    Simple means: header and value inside ``buf[:bound]``, defined
    length up to `defer_size`, not a sequence, not pixel data, not an item. This loop is
    the hot path of reading, so it is written for CPython speed.
    """
    unpack, unpack_long = _STRUCTS[little][1].unpack_from, _STRUCTS[little][2].unpack_from
    long_vrs, short_vrs, names = _LONG_VRS, _SHORT_VRS, _VR_NAMES
    new_tuple, raw_type, base_tag = _new_tuple, RawDataElement, BaseTag
    limit = bound - 12
    rel = pos - base
    while rel <= limit:
        group, elem, vr, length = unpack(buf, rel)
        if vr in short_vrs:
            vrel = rel + 8
        elif vr in long_vrs and vr != b"SQ" and group != 0x7FE0:
            length = unpack_long(buf, rel + 8)[0]
            if length > defer_size:
                break
            vrel = rel + 12
        else:
            break
        end = vrel + length
        if end > bound or group == 0xFFFE:
            break
        tag = base_tag(group << 16 | elem)
        elements[tag] = new_tuple(
            raw_type,
            (tag, names[vr], length, buf[vrel:end], base + vrel, False, little, True, False),
        )
        rel = end
    return base + rel


def _fast_implicit(
    elements: dict[BaseTag, RawDataElement],
    buf: bytes,
    base: int,
    pos: int,
    bound: int,
    little: bool,
    defer_size: int,
) -> int:
    """The implicit VR counterpart of :func:`_fast_explicit`."""
    unpack = _STRUCTS[little][0].unpack_from
    dictionary_get = DicomDictionary.get
    new_tuple, raw_type, base_tag = _new_tuple, RawDataElement, BaseTag
    limit = bound - 12
    rel = pos - base
    while rel <= limit:
        group, elem, length = unpack(buf, rel)
        end = rel + 8 + length
        if end > bound or length > defer_size or group in (0x7FE0, 0xFFFE, 0x0000):
            break
        key = group << 16 | elem
        entry = dictionary_get(key)
        if entry is not None and entry[0] == "SQ":
            break
        tag = base_tag(key)
        elements[tag] = new_tuple(
            raw_type,
            (tag, None, length, buf[rel + 8 : end], base + rel + 8, True, little, True, False),
        )
        rel = end
    return base + rel


def scan_dataset(
    win: Window,
    pos: int,
    end: int,
    implicit: bool,
    little: bool,
    *,
    stop_at_pixels: bool,
    defer_size: int,
    budget: int,
) -> ScanResult:
    """Scan the top-level elements in ``[pos, end)``.

    A tight loop handles the common element (defined length, not a sequence, value in
    the window); :func:`_scan_one` handles the rest.

    Parameters
    ----------
    win
        The source.
    pos, end
        The range to scan.
    implicit, little
        The encoding of the data set.
    stop_at_pixels
        Stop before the first top-level pixel data element.
    defer_size
        Values longer than this (sequences excepted) are not read: their raw element
        has value ``None`` and is read by pydicom, or copied by the writer, later.
    budget
        Largest number of value bytes that may be held in memory.

    Raises
    ------
    MalformedInputError
        On truncation, wrong lengths or bytes that are not data elements.
    UnsupportedInputError
        When the values to hold exceed `budget`.
    """
    fast = _fast_implicit if implicit else _fast_explicit
    result = ScanResult({})
    elements = result.elements
    while pos < end:
        buf, base = win.buf, win.base
        if base <= pos:
            after = fast(elements, buf, base, pos, min(len(buf), end - base), little, defer_size)
            result.kept += after - pos
            pos = after
            if pos >= end:
                break
        _budget(result.kept, budget)
        next_pos = _scan_one(
            win, pos, end, implicit, little, result, stop_at_pixels, defer_size, budget
        )
        if next_pos is None:
            result.stop = pos
            return result
        pos = next_pos
        if not win.base <= pos <= win.base + len(win.buf) - 12 and pos + 12 <= end:
            win.load(pos, 12)
    _budget(result.kept, budget)
    result.stop = pos
    return result


def pixel_extent(
    win: Window, pos: int, end: int, implicit: bool, little: bool
) -> tuple[int, str | None, int, int, bool]:
    """Measure the pixel data element at `pos` without reading its value.

    Returns
    -------
    tuple
        ``(tag, vr, header length, total encoded length, encapsulated)``.
    """
    tag, vr, length, hdr = element_header(win, pos, end, implicit, little)
    vr_name = None if vr is None else _VR_NAMES.get(vr)
    if length != UNDEFINED:
        if pos + hdr + length > end:
            raise MalformedInputError("truncated: the pixel data is cut short")
        return tag, vr_name, hdr, hdr + length, False
    after = walk_items(
        win, pos + hdr, end, implicit, little, undefined=True, fragments=True, depth=0
    )
    return tag, vr_name, hdr, after - pos, True
