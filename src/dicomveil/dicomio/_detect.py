"""Recognising DICOM, and working out how a file is laid out and encoded.

Tolerant: files without the preamble, without File Meta Information (legacy raw data
sets), without a Transfer Syntax UID, or with a data set that contradicts its transfer
syntax are recognised when they are recognisably DICOM.

References
----------
PS3.10 section 7.1 (File Meta Information); PS3.5 section A.5 (deflate).
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from pathlib import Path
from typing import Final

from pydicom import config
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicomveil.dicomio._window import UNDEFINED, VR_NAMES, Window, element_header
from dicomveil.errors import MalformedInputError, UnsupportedInputError

__all__ = ["detect_encoding", "inflate", "is_dicom", "layout", "read_meta", "text_value"]

FIRST_READ: Final = 16 * 1024
"""Bytes read first: enough for most headers."""
_UID_CHARS: Final = re.compile(r"[0-9][0-9.]{0,63}")
_NATIVE: Final = {
    (True, True): ImplicitVRLittleEndian,
    (False, True): ExplicitVRLittleEndian,
    (False, False): ExplicitVRBigEndian,
}


def _plausible_raw(head: bytes) -> bool:
    """Return whether `head` starts like a data set without File Meta Information.

    The first element must be in group 0008 (little or big endian, implicit or explicit
    VR) with a plausible length, and the next element, when in reach, must follow it.
    """
    if len(head) < 8:
        return False
    for little in (True, False):
        order = "<" if little else ">"
        group, elem = struct.unpack(order + "HH", head[:4])
        if group != 0x0008:
            continue
        vr = head[4:6]
        if vr in VR_NAMES:
            length, hdr = struct.unpack(order + "H", head[6:8])[0], 8
        elif little:
            length, hdr = struct.unpack("<L", head[4:8])[0], 8
            if length > 0xFFFF:
                continue
        else:
            continue
        nxt = hdr + length
        if nxt + 4 <= len(head):
            group2, elem2 = struct.unpack(order + "HH", head[nxt : nxt + 4])
            if (group2, elem2) <= (group, elem) or group2 > 0x00FF:
                continue
        return True
    return False


def layout(head: bytes) -> tuple[bool, int] | None:
    """Return ``(has_preamble, offset after any preamble/prefix)`` or ``None`` if not DICOM."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True, 132
    if head[:4] == b"DICM":
        return False, 4
    if head[:2] == b"\x02\x00" and head[4:6] in VR_NAMES:
        return False, 0
    if _plausible_raw(head):
        return False, 0
    return None


def is_dicom(path: Path | str) -> bool:
    """Return whether `path` holds DICOM, judged by content, not by file name.

    A file is DICOM when it has the ``DICM`` prefix (after a 128-byte preamble, or at the
    very start), starts with a File Meta Information group, or starts like a raw data set
    whose first element is in group 0008.

    Parameters
    ----------
    path
        The file to look at; unreadable files and folders are not DICOM.
    """
    try:
        with open(path, "rb") as fp:
            head = fp.read(512)
    except OSError:
        return False
    return layout(head) is not None


def read_meta(win: Window, pos: int, budget: int) -> tuple[dict[BaseTag, RawDataElement], int]:
    """Read the File Meta Information group (0002,eeee) elements starting at `pos`."""
    meta: dict[BaseTag, RawDataElement] = {}
    size = win.size
    while pos + 8 <= size:
        tag, vr, length, hdr = element_header(win, pos, size, False, True)
        if tag >> 16 != 0x0002:
            break
        if length == UNDEFINED or pos + hdr + length > size:
            raise MalformedInputError("truncated or wrong length in the File Meta Information")
        if length > budget:
            raise UnsupportedInputError("File Meta Information element too large")
        value = win.take(pos + hdr, length)
        vr_name = None if vr is None else VR_NAMES[vr]
        meta[BaseTag(tag)] = RawDataElement(
            BaseTag(tag), vr_name, length, value, pos + hdr, vr is None, True
        )
        pos += hdr + length
    return meta, pos


def text_value(raw: RawDataElement | None) -> str:
    if raw is None or not raw.value:
        return ""
    return raw.value.decode("ascii", "replace").strip("\0 ")


def inflate(win: Window, pos: int, limit: int) -> bytes:
    """Inflate the deflated data set that starts at `pos`, holding at most `limit` bytes."""
    assert win.fd is not None
    for wbits in (-zlib.MAX_WBITS, zlib.MAX_WBITS | 32):
        inflater = zlib.decompressobj(wbits)
        out: list[bytes] = []
        produced = 0
        at = pos
        try:
            while at < win.size and not inflater.eof:
                chunk = os.pread(win.fd, min(1024 * 1024, win.size - at), at)
                if not chunk:
                    break
                at += len(chunk)
                data = inflater.decompress(chunk, limit + 1 - produced)
                produced += len(data)
                if produced > limit:
                    raise UnsupportedInputError(f"inflated data set larger than {limit >> 20} MiB")
                out.append(data)
        except zlib.error:
            continue
        if not inflater.eof:
            raise MalformedInputError("truncated: the deflated data set is cut short")
        return b"".join(out)
    raise MalformedInputError("the deflated data set is corrupt")


def detect_encoding(win: Window, pos: int, ts: str) -> tuple[UID, bool, bool]:
    """Return the transfer syntax and ``(implicit, little)`` the data set at `pos` really uses.

    Without a Transfer Syntax UID the encoding is guessed from the first element. When
    the data set contradicts its transfer syntax (implicit VR under an explicit syntax,
    as some writers do), a native syntax is corrected to match the data set, as pydicom
    does; any other syntax is kept, and the writer re-encodes the header to match it.
    """
    if pos + 6 > win.size:
        implicit = ts == ImplicitVRLittleEndian
        return UID(ts or ExplicitVRLittleEndian), implicit, ts != ExplicitVRBigEndian
    head = win.take(pos, 6)
    looks_explicit = head[4:6] in VR_NAMES
    if not ts:
        little = not (looks_explicit and struct.unpack("<H", head[:2])[0] >= 0x0400)
        implicit = not looks_explicit
        return _NATIVE[(implicit, little)], implicit, little
    if not _UID_CHARS.fullmatch(ts):
        raise MalformedInputError("invalid Transfer Syntax UID")
    uid = UID(ts, validation_mode=config.IGNORE)
    if uid.is_transfer_syntax:
        implicit, little = uid.is_implicit_VR, uid.is_little_endian
    else:
        implicit, little = False, True  # private syntaxes: explicit VR little endian
    if implicit == looks_explicit and little:
        implicit = not looks_explicit
        if uid in _NATIVE.values():
            uid = _NATIVE[(implicit, True)]
    return uid, implicit, little
