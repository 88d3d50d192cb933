"""The File Meta Information group dicomveil writes, and its alignment padding."""

from __future__ import annotations

import re
import struct
from typing import Final

from dicomveil.dicomio._model import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from dicomveil.errors import DeidentificationError

__all__ = ["MIN_PADDING", "PADDING_CREATOR_UID", "alignment_padding", "encode_file_meta"]

_PREFIX: Final = b"\0" * 128 + b"DICM"
_UID_CHARS: Final = re.compile(r"[0-9][0-9.]{0,63}")


def _uid_value(value: str, keyword: str) -> bytes:
    text = value.strip("\0 ")
    if not _UID_CHARS.fullmatch(text):
        raise DeidentificationError(f"{keyword} is not a valid UID")
    data = text.encode("ascii")
    return data + b"\0" if len(data) % 2 else data


def _short(tag: int, vr: bytes, value: bytes) -> bytes:
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def encode_file_meta(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, *, padding: int = 0
) -> bytes:
    """Return preamble, ``DICM`` and a fresh File Meta Information group.

    The preamble is zeroed; the group holds only the version, the SOP Class and
    Instance UIDs of the data set, the transfer syntax and dicomveil's implementation
    identity. Source/sending/receiving AE titles and private information are never
    copied, and the group length is computed.

    With `padding`, the group is made exactly that many bytes longer by a zero-filled
    (0002,0102) Private Information whose (0002,0100) creator is :data:`PADDING_CREATOR_UID`
    (see :func:`alignment_padding`); `padding` must then be at least :data:`MIN_PADDING`
    and even.

    References
    ----------
    PS3.10 section 7.1.
    """
    version = struct.pack("<HH2sHL", 0x0002, 0x0001, b"OB", 0, 2) + b"\x00\x01"
    name = IMPLEMENTATION_VERSION_NAME.encode("ascii")
    elements = [
        version,
        _short(0x00020002, b"UI", _uid_value(sop_class_uid, "SOPClassUID")),
        _short(0x00020003, b"UI", _uid_value(sop_instance_uid, "SOPInstanceUID")),
        _short(0x00020010, b"UI", _uid_value(transfer_syntax, "TransferSyntaxUID")),
        _short(0x00020012, b"UI", _uid_value(IMPLEMENTATION_CLASS_UID, "ImplementationClassUID")),
        _short(0x00020013, b"SH", name + b" " * (len(name) % 2)),
    ]
    if padding:
        if padding < MIN_PADDING or padding % 2:
            raise ValueError("padding must be even and at least MIN_PADDING bytes")
        elements.append(_PADDING_CREATOR)
        size = padding - MIN_PADDING
        elements.append(struct.pack("<HH2sHL", 0x0002, 0x0102, b"OB", 0, size) + bytes(size))
    body = b"".join(elements)
    group_length = struct.pack("<HH2sHL", 0x0002, 0x0000, b"UL", 4, len(body))
    return _PREFIX + group_length + body


PADDING_CREATOR_UID: Final = IMPLEMENTATION_CLASS_UID + ".1"
"""(0002,0100) creator of the zero-filled alignment padding dicomveil may add to the meta."""
_PADDING_CREATOR: Final = _short(0x00020100, b"UI", _uid_value(PADDING_CREATOR_UID, "creator"))
MIN_PADDING: Final = len(_PADDING_CREATOR) + 12
_PAGE: Final = 4096


def alignment_padding(header_end: int, source_offset: int) -> int:
    """Return the meta padding that puts `header_end` at the page offset of `source_offset`.

    Kernel copies (``copy_file_range``/``sendfile``) of a large span run about 1.7 times
    faster when the span starts at the same offset within a page in the output as in
    the source, so the writer pads the File Meta Information of instances with large
    pixel data by up to 4 KiB to line them up. Returns 0 when no padding can do it
    (odd offsets).
    """
    pad = (source_offset - header_end) % _PAGE
    if pad % 2:
        return 0
    while pad and pad < MIN_PADDING:
        pad += _PAGE
    return pad
