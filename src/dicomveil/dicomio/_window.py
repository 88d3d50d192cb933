"""A bounded window on encoded DICOM bytes, and decoding of element headers.

Positions are absolute offsets in the source: the file, or the inflated stream of a
deflated data set.

References
----------
PS3.5 section 7.1 (data elements).
"""

from __future__ import annotations

import os
from struct import Struct
from typing import Final

from pydicom.datadict import keyword_for_tag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

from dicomveil.errors import MalformedInputError

__all__ = [
    "CHARSET_TAG",
    "ITEM",
    "ITEM_DELIMITER",
    "LONG_VRS",
    "MAX_DEPTH",
    "SEQUENCE_DELIMITER",
    "STRUCTS",
    "UNDEFINED",
    "VR_NAMES",
    "Window",
    "element_header",
    "at_offset",
    "tag_name",
]

UNDEFINED: Final = 0xFFFFFFFF
ITEM: Final = 0xFFFEE000
ITEM_DELIMITER: Final = 0xFFFEE00D
SEQUENCE_DELIMITER: Final = 0xFFFEE0DD
CHARSET_TAG: Final = 0x00080005
MAX_DEPTH: Final = 64

LONG_VRS: Final = frozenset(str(vr).encode("ascii") for vr in EXPLICIT_VR_LENGTH_32)
VR_NAMES: Final = {str(vr).encode("ascii"): str(vr) for vr in VR if len(str(vr)) == 2}
_FRAGMENT_VRS: Final = frozenset({b"OB", b"OW", b"OF", b"OD", b"OL", b"OV"})
STRUCTS: Final = {
    little: (
        Struct("<HHL" if little else ">HHL"),
        Struct("<HH2sH" if little else ">HH2sH"),
        Struct("<L" if little else ">L"),
    )
    for little in (True, False)
}


def tag_name(tag: int) -> str:
    """Return how a message names the element `tag` of a data set that was read whole:
    ``element Keyword (gggg,eeee)`` for a tag of the DICOM dictionary, else ``a private or
    unlisted element``.

    The four bytes of a tag read at a wrong position (after a wrong length) are value bytes
    (``(6F43,706D)`` is ``Comp`` of a name): only a dictionary tag, which such bytes match
    by rare coincidence and then only as a keyword, is ever printed. Errors found while
    reading the structure name a byte offset instead (:func:`at_offset`), never a tag.
    """
    keyword = keyword_for_tag(tag) if tag >> 16 & 1 == 0 else ""
    if not keyword:
        return "a private or unlisted element"
    return f"element {keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def at_offset(pos: int) -> str:
    """Return ``the element at byte N``: how a structural error names an element (the tag
    there may be value bytes, see :func:`tag_name`)."""
    return f"the element at byte {pos}"


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
    implicit_s, explicit_s, long_s = STRUCTS[little]
    head = win.take(pos, 8)
    if not implicit:
        group, elem, vr, length = explicit_s.unpack(head)
        tag = group << 16 | elem
        if vr in LONG_VRS:
            if pos + 12 > end:
                raise MalformedInputError("truncated: an element header is cut short")
            return tag, vr, long_s.unpack(win.take(pos + 8, 4))[0], 12
        if vr in VR_NAMES:
            return tag, vr, length, 8
        if group != 0xFFFE and b"AA" <= vr <= b"ZZ":
            raise MalformedInputError(f"{at_offset(pos)} has an unknown VR")
    group, elem, length = implicit_s.unpack(head)
    return group << 16 | elem, None, length, 8
