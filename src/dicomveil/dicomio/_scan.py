"""Fast, bounded scanning of the top-level data elements of a data set.

The scanner builds pydicom :class:`~pydicom.dataelem.RawDataElement` objects directly
(pydicom converts them lazily when they are accessed), several times faster than
pydicom's generic reader. Sequences are walked structurally for validation
(:mod:`dicomveil.dicomio._walk`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pydicom._dicom_dict import DicomDictionary
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag

from dicomveil.dicomio._model import PIXEL_DATA_TAGS
from dicomveil.dicomio._walk import FRAGMENT_VRS, is_sequence, walk_items
from dicomveil.dicomio._window import (
    CHARSET_TAG,
    LONG_VRS,
    STRUCTS,
    UNDEFINED,
    VR_NAMES,
    Window,
    at_offset,
    element_header,
)
from dicomveil.errors import MalformedInputError, UnsupportedInputError

__all__ = ["ScanResult", "scan_dataset"]


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
    return _new_tuple(RawDataElement, (tag, vr, length, value, at, imp, lit, True, False))


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
    vr_name = None if vr is None else VR_NAMES[vr]
    btag = BaseTag(tag)
    if length == UNDEFINED:
        if vr is None and tag not in PIXEL_DATA_TAGS and not is_sequence(tag, None):
            first = win.peek(vpos, 4)
            vr_name = "SQ" if first in (b"\xfe\xff\x00\xe0", b"\xff\xfe\xe0\x00") else None
        after = walk_items(
            win,
            vpos,
            end,
            elem_implicit or vr == b"UN",
            little,
            undefined=True,
            fragments=vr in FRAGMENT_VRS or (vr is None and tag in PIXEL_DATA_TAGS),
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
        raise MalformedInputError(f"truncated or wrong length: {at_offset(pos)} exceeds the data")
    is_sq = is_sequence(tag, vr)
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


_SHORT_VRS: Final = frozenset(VR_NAMES) - LONG_VRS


def _fast_explicit(
    win: Window,
    elements: dict[BaseTag, RawDataElement],
    pos: int,
    bound: int,
    little: bool,
    defer_size: int,
) -> int:
    """Add explicit VR elements from the window while they are simple; return where it stopped.

    Simple means: header and value inside the first `bound` bytes of the window, defined
    length up to `defer_size` (sequences are walked for validation), not pixel data, not
    an item. This loop is the hot path of reading, so it is written for CPython speed.
    """
    buf, base = win.buf, win.base
    unpack, unpack_long = STRUCTS[little][1].unpack_from, STRUCTS[little][2].unpack_from
    long_vrs, short_vrs, names = LONG_VRS, _SHORT_VRS, VR_NAMES
    new_tuple, raw_type, base_tag = _new_tuple, RawDataElement, BaseTag
    limit = bound - 12
    rel = pos - base
    while rel <= limit:
        group, elem, vr, length = unpack(buf, rel)
        if vr in short_vrs:
            vrel = rel + 8
        elif vr in long_vrs and group != 0x7FE0:
            length = unpack_long(buf, rel + 8)[0]
            vrel = rel + 12
            if vr == b"SQ":
                if length == UNDEFINED or vrel + length > bound:
                    break
                walk_items(
                    win,
                    base + vrel,
                    base + vrel + length,
                    False,
                    little,
                    undefined=False,
                    fragments=False,
                    depth=0,
                )
                if win.buf is not buf:  # cannot happen within bounds; stay safe
                    break
            elif length > defer_size:
                break
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
    win: Window,
    elements: dict[BaseTag, RawDataElement],
    pos: int,
    bound: int,
    little: bool,
    defer_size: int,
) -> int:
    """The implicit VR counterpart of :func:`_fast_explicit` (sequences left to the slow path)."""
    buf, base = win.buf, win.base
    unpack = STRUCTS[little][0].unpack_from
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
            after = fast(win, elements, pos, min(len(buf), end - base), little, defer_size)
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
