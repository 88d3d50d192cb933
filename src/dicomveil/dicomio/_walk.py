"""Structural walks of sequences and encapsulated pixel data, without building objects.

A wrong length anywhere in a nested sequence is reported at read time, and encapsulated
pixel data is measured by reading only its item headers.

References
----------
PS3.5 section 7.5 (nesting of data sets) and A.4 (encapsulation).
"""

from __future__ import annotations

from typing import Final

from pydicom._dicom_dict import DicomDictionary
from pydicom.datadict import _dictionary_vr_fast

from dicomveil.dicomio._model import PIXEL_DATA_TAGS
from dicomveil.dicomio._window import (
    ITEM,
    ITEM_DELIMITER,
    LONG_VRS,
    MAX_DEPTH,
    SEQUENCE_DELIMITER,
    STRUCTS,
    UNDEFINED,
    VR_NAMES,
    Window,
    at_offset,
    element_header,
)
from dicomveil.errors import MalformedInputError, UnsupportedInputError

__all__ = ["FRAGMENT_VRS", "is_sequence", "pixel_extent", "walk_elements", "walk_items"]

FRAGMENT_VRS: Final = frozenset({b"OB", b"OW", b"OF", b"OD", b"OL", b"OV"})


def is_sequence(tag: int, vr: bytes | None) -> bool:
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
    unpack = STRUCTS[little][0].unpack
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
    if win.base <= pos and end - win.base <= len(win.buf):
        if implicit:
            pos = _walk_implicit(win, pos, end, little, depth)
        else:
            pos = _walk_explicit(win, pos, end, little, depth)
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
            is_fragments = vr in FRAGMENT_VRS or (vr is None and tag in PIXEL_DATA_TAGS)
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
                f"truncated or wrong length: {at_offset(pos - hdr)} exceeds its item"
            )
        if is_sequence(tag, vr):
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


_SHORT_VRS: Final = frozenset(VR_NAMES) - LONG_VRS


def _walk_explicit(win: Window, pos: int, end: int, little: bool, depth: int) -> int:
    """Walk simple explicit VR elements held in the window; return where it stopped.

    The fast path of :func:`walk_elements`: it stops, leaving the general loop to go on
    (and to report errors), at anything but a defined-length element within the item.
    """
    buf, base = win.buf, win.base
    unpack, unpack_long = STRUCTS[little][1].unpack_from, STRUCTS[little][2].unpack_from
    short_vrs, long_vrs = _SHORT_VRS, LONG_VRS
    rel, stop = pos - base, end - base
    while rel + 12 <= stop:
        group, elem, vr, length = unpack(buf, rel)
        if vr in short_vrs:
            nxt = rel + 8 + length
        elif vr in long_vrs and group != 0xFFFE:
            length = unpack_long(buf, rel + 8)[0]
            nxt = rel + 12 + length
            if length == UNDEFINED or nxt > stop:
                break
            if vr == b"SQ":
                walk_items(
                    win,
                    base + rel + 12,
                    base + nxt,
                    False,
                    little,
                    undefined=False,
                    fragments=False,
                    depth=depth,
                )
        else:
            break
        if nxt > stop or group == 0xFFFE:
            break
        rel = nxt
    return base + rel


def _walk_implicit(win: Window, pos: int, end: int, little: bool, depth: int) -> int:
    """The implicit VR counterpart of :func:`_walk_explicit`."""
    buf, base = win.buf, win.base
    unpack = STRUCTS[little][0].unpack_from
    dictionary_get = DicomDictionary.get
    rel, stop = pos - base, end - base
    while rel + 8 <= stop:
        group, elem, length = unpack(buf, rel)
        nxt = rel + 8 + length
        if length == UNDEFINED or nxt > stop or group == 0xFFFE:
            break
        tag = group << 16 | elem
        entry = dictionary_get(tag)
        if (entry is not None and entry[0] == "SQ") or (
            entry is None and not group & 1 and is_sequence(tag, None)
        ):
            walk_items(
                win,
                base + rel + 8,
                base + nxt,
                True,
                little,
                undefined=False,
                fragments=False,
                depth=depth,
            )
        rel = nxt
    return base + rel


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
    vr_name = None if vr is None else VR_NAMES.get(vr)
    if length != UNDEFINED:
        if pos + hdr + length > end:
            raise MalformedInputError("truncated: the pixel data is cut short")
        return tag, vr_name, hdr, hdr + length, False
    after = walk_items(
        win, pos + hdr, end, implicit, little, undefined=True, fragments=True, depth=0
    )
    return tag, vr_name, hdr, after - pos, True
