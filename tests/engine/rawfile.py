"""Explicit (or implicit) VR little endian files written byte by byte, for inputs no
well-behaved writer produces: wrong VRs, odd lengths, stray bytes in names.

Every value is synthetic. ``raw_file(path, elements)`` writes a Part 10 file whose data set
holds exactly the ``(tag, VR, value)`` triples given (sorted by tag), with the VR bytes and
the value bytes as given (no padding, no validation).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                      b"UR", b"UT", b"UV"})  # fmt: skip
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ROOT = "1.2.826.0.1.3680043.99.11"

Element = tuple[int, bytes, bytes]


def encode(tag: int, vr: bytes, value: bytes, implicit: bool = False) -> bytes:
    """One element, exactly as given (the length is the value's)."""
    group, elem = tag >> 16, tag & 0xFFFF
    if implicit:
        return struct.pack("<HHL", group, elem, len(value)) + value
    if vr in LONG_VRS:
        return struct.pack("<HH2sHL", group, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def item(elements: Iterable[Element], implicit: bool = False) -> bytes:
    """One defined-length sequence item."""
    body = b"".join(encode(*e, implicit=implicit) for e in sorted(elements))
    return struct.pack("<HHL", 0xFFFE, 0xE000, len(body)) + body


def text(value: str) -> bytes:
    """ASCII/Latin-1 text padded to even length with a space."""
    data = value.encode("latin-1")
    return data + b" " * (len(data) & 1)


def uid(value: str) -> bytes:
    data = value.encode("ascii")
    return data + b"\0" * (len(data) & 1)


def base_elements(index: int = 1) -> dict[int, tuple[bytes, bytes]]:
    """The identifying UIDs and a few usual attributes of a small CT image header."""
    return {
        0x00080016: (b"UI", uid(CT_IMAGE)),
        0x00080018: (b"UI", uid(f"{ROOT}.1.1.{index}")),
        0x00080020: (b"DA", b"20210304"),
        0x00080050: (b"SH", text("ACC0042")),
        0x00080060: (b"CS", text("CT")),
        0x00100010: (b"PN", text("QUIXOTE^ZEBULON")),
        0x00100020: (b"LO", text("PID0042")),
        0x0020000D: (b"UI", uid(f"{ROOT}.1")),
        0x0020000E: (b"UI", uid(f"{ROOT}.1.1")),
        0x00200010: (b"SH", text("STUDY42")),
    }


def raw_file(
    path: Path,
    elements: dict[int, tuple[bytes, bytes]],
    *,
    implicit: bool = False,
) -> Path:
    """Write a Part 10 file holding ``elements`` (tag -> (VR bytes, value bytes))."""
    syntax = uid(IMPLICIT_LE if implicit else EXPLICIT_LE)
    sop_class = elements.get(0x00080016, (b"UI", uid(CT_IMAGE)))[1]
    sop_instance = elements.get(0x00080018, (b"UI", uid(f"{ROOT}.0")))[1]
    meta_body = b"".join(
        encode(tag, vr, value)
        for tag, vr, value in (
            (0x00020001, b"OB", b"\0\1"),
            (0x00020002, b"UI", sop_class),
            (0x00020003, b"UI", sop_instance),
            (0x00020010, b"UI", syntax),
            (0x00020012, b"UI", uid(f"{ROOT}.9")),
        )
    )
    meta = encode(0x00020000, b"UL", struct.pack("<L", len(meta_body))) + meta_body
    body = b"".join(
        encode(tag, vr, value, implicit) for tag, (vr, value) in sorted(elements.items())
    )
    path.write_bytes(b"\0" * 128 + b"DICM" + meta + body)
    return path
