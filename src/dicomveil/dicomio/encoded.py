"""The start of a file as bytes, for the pipeline's byte-level fast path.

:func:`read_head` reads the first bytes of a file and locates its data set, for instances
whose output is written in the encoding they were read in (explicit or implicit VR little
endian, not deflated); :func:`pixel_span` measures the top-level pixel data once the data
set is known to end there. Anything else gives ``None``: :func:`read_instance` handles it
(and reports what is wrong with the file).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Final

from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import UID

from dicomveil.dicomio._datasets import file_dataset
from dicomveil.dicomio._detect import detect_encoding, layout
from dicomveil.dicomio._model import DEFLATED_TRANSFER_SYNTAXES, PixelSpan
from dicomveil.dicomio._scan import ScanResult, scan_dataset
from dicomveil.dicomio._walk import pixel_extent
from dicomveil.dicomio._window import LONG_VRS, UNDEFINED, VR_NAMES, Window
from dicomveil.errors import DicomveilError

__all__ = ["Head", "header_dataset", "pixel_span", "read_head", "scan_head"]

_MEDIA_DIRECTORY: Final = "1.2.840.10008.1.3.10"
_ERRORS: Final = (DicomveilError, ValueError, IndexError, KeyError, TypeError, UnicodeError)
_EXPLICIT = struct.Struct("<HH2sH").unpack_from
_IMPLICIT = struct.Struct("<HHL").unpack_from
_LENGTH = struct.Struct("<L").unpack_from


@dataclass(frozen=True, slots=True)
class Head:
    """The first bytes of a file and where its data set starts.

    Attributes
    ----------
    data
        Bytes from the start of the file.
    start
        Offset of the first data set element.
    eof
        Whether `data` holds the whole file.
    implicit
        Whether the data set is implicit VR (always little endian here).
    transfer_syntax
        The transfer syntax the output declares (as :func:`read_instance` finds it).
    size
        Size of the file.
    """

    data: bytes
    start: int
    eof: bool
    implicit: bool
    transfer_syntax: UID
    size: int


def _meta(data: bytes, pos: int) -> tuple[str, str, int] | None:
    """The Transfer Syntax and Media Storage SOP Class UIDs of the File Meta Information
    at ``pos``, and its end; ``None`` unless it is plainly well formed within ``data``."""
    syntax = media = ""
    size = len(data)
    while pos + 8 <= size:
        group, elem, vr, length = _EXPLICIT(data, pos)
        if vr in LONG_VRS:
            if pos + 12 > size:
                return None
            length, header = _LENGTH(data, pos + 8)[0], 12
        elif vr in VR_NAMES:
            header = 8
        elif group != 0xFFFE and b"AA" <= vr <= b"ZZ":
            return None  # an unknown VR: the reader says so
        else:
            group, elem, length = _IMPLICIT(data, pos)
            header = 8
        if group != 0x0002:
            return syntax, media, pos
        end = pos + header + length
        if length == UNDEFINED or end > size:
            return None
        if elem == 0x0010:
            syntax = data[pos + header : end].decode("ascii", "replace").strip("\0 ")
        elif elem == 0x0002:
            media = data[pos + header : end].decode("ascii", "replace").strip("\0 ")
        pos = end
    return None  # the meta (or the file) ends within the bytes read: reference path


@lru_cache(maxsize=256)
def _encoding(syntax: str, first: bytes) -> tuple[UID, bool, bool, bool] | None:
    """``(output transfer syntax, implicit, little, output encoding matches)`` for a data
    set whose first 6 bytes are ``first``, as the reader decides (cached: few distinct)."""
    win = Window(None, len(first), first, 0)
    try:
        uid, implicit, little = detect_encoding(win, 0, syntax)
    except _ERRORS:
        return None
    if uid.is_transfer_syntax:
        same = (uid.is_implicit_VR, uid.is_little_endian) == (implicit, little)
    else:
        same = True
    return uid, implicit, little, same


def read_head(fd: int, size: int, want: int) -> Head | None:
    """Read up to `want` bytes of the file `fd` (of `size` bytes) and locate its data set.

    Returns ``None`` for what only :func:`~dicomveil.dicomio.read_instance` handles:
    not recognisably DICOM, deflated, big endian, a data set that contradicts its transfer
    syntax, a File Meta Information group longer than the bytes read, a DICOMDIR.
    """
    if size == 0:
        return None
    data = os.pread(fd, min(size, want), 0)
    found = layout(data)
    if found is None:
        return None
    meta = _meta(data, found[1])
    if meta is None:
        return None
    syntax, media, start = meta
    if syntax in DEFLATED_TRANSFER_SYNTAXES or media == _MEDIA_DIRECTORY:
        return None
    first = data[start : start + 6] if start + 6 <= size else data[start:start]
    if len(first) < 6 and start + 6 <= size:
        return None
    # only the first tag and whether a VR follows it matter: few distinct keys
    encoding = _encoding(syntax, first[:4] + (b"CS" if first[4:6] in VR_NAMES else b"\0\0"))
    if encoding is None:
        return None
    uid, implicit, little, same = encoding
    if not little or not same:
        return None  # big endian, or the writer re-encodes the header: reference path
    return Head(data, start, len(data) == size, implicit, uid, size)


def scan_head(head: Head) -> ScanResult | None:
    """The top-level elements of ``head``'s data set up to the pixel data, as raw elements
    (every value read, none converted) and where they stop; ``None`` when the data set may
    continue past the bytes read, or is malformed."""
    size = len(head.data)
    win = Window(None, size, head.data, 0)
    try:
        scan = scan_dataset(
            win,
            head.start,
            size,
            head.implicit,
            True,
            stop_at_pixels=True,
            defer_size=size + 1,
            budget=size + 1,
        )
    except _ERRORS:
        return None
    if scan.pixel_tag is None and not head.eof:
        return None
    return scan


def header_dataset(head: Head) -> FileDataset | None:
    """The data set of ``head`` as :func:`read_instance` gives it (every value read), up to
    the pixel data; ``None`` when it may continue past the bytes read, or is malformed.

    For looking at an instance's values before the fast path changes anything (the
    identifying values that cleaning text needs).
    """
    scan = scan_head(head)
    if scan is None:
        return None
    return file_dataset(Path(), 0.0, scan.elements, FileMetaDataset(), head.implicit, True)


def pixel_span(fd: int, head: Head, stop: int, path: Path) -> PixelSpan | None:
    """Measure the top-level pixel data element at `stop`, which must end the file.

    Returns ``None`` when elements (or padding) follow it, or it cannot be measured.
    """
    win = Window(fd, head.size, head.data, 0)
    try:
        tag, vr, header_length, length, encapsulated = pixel_extent(
            win, stop, head.size, head.implicit, True
        )
    except _ERRORS:
        return None
    if stop + length != head.size:
        return None
    return PixelSpan(
        path=path,
        offset=stop,
        length=length,
        tag=tag,
        vr=vr,
        header_length=header_length,
        encapsulated=encapsulated,
    )
