"""A seeded mutator of DICOM files: hostile variants of real files, the same for the same seed.

Bases are pydicom's test files and dicomveil's demo study, each rewritten once with *planted*
identifying values (:data:`PLANTED`) in the places a PACS keeps them, so that any output can be
searched for them byte by byte. Every mutant starts from a base with its own SOP Instance UID
(mutants of one base never share one by accident) and applies one *recipe*: a kind of damage
real archives, modalities and attackers produce (truncation, lying length fields, wrong VRs,
deep nesting, deflate bombs, character-set garbage, broken encapsulation, missing identifiers,
hostile UIDs, duplicates).

``mutant(seed, index)`` is a pure function of its arguments (and of the installed pydicom's
test files): a failure is reproduced from the recipe, seed and index printed by the campaign::

    python -m tests.fuzz.mutator --seed 7 --index 123 --out /tmp/mutant

This module is test support: it does not import dicomveil.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import random
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pydicom
import pydicom.data
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID

from tests.fuzz.encoded import (
    DEFLATED,
    LONG_VRS,
    SEQUENCE_END,
    UNDEFINED,
    Element,
    delete_element,
    encode_element,
    layout,
    set_value,
)

__all__ = [
    "KINDS",
    "PLANTED",
    "PYDICOM_DATA",
    "Base",
    "Mutant",
    "bases",
    "mutant",
    "mutants",
    "pydicom_test_files",
]

FAMILY: Final = "QUIXOTEFZ"
GIVEN: Final = "ZEBULONFZ"
PATIENT_ID: Final = "FZMRN4711"
STREET: Final = "FZELM STREET"
#: Bytes that must never appear in a de-identified output, a report or the terminal.
PLANTED: Final = (FAMILY.encode(), GIVEN.encode(), PATIENT_ID.encode(), STREET.encode())
ESCAPE_MARK: Final = "fuzzescape"
"""Path component of hostile UIDs: a file or folder of this name outside DEST is an escape."""

PATIENT_NAME: Final = 0x00100010
PATIENT_ID_TAG: Final = 0x00100020
SOP_CLASS: Final = 0x00080016
SOP_INSTANCE: Final = 0x00080018
MEDIA_SOP_INSTANCE: Final = 0x00020003
CHARSET: Final = 0x00080005
STUDY_DESCRIPTION: Final = 0x00081030
PATIENT_COMMENTS: Final = 0x00104000
PIXEL_DATA: Final = 0x7FE00010
CONTENT_SEQUENCE: Final = 0x0040A730
UID_TAGS: Final = {
    "StudyInstanceUID": 0x0020000D,
    "SeriesInstanceUID": 0x0020000E,
    "SOPInstanceUID": SOP_INSTANCE,
    "FrameOfReferenceUID": 0x00200052,
    "MediaStorageSOPInstanceUID": MEDIA_SOP_INSTANCE,
}
IDENTIFIER_TAGS: Final = {
    "PatientID": PATIENT_ID_TAG,
    "PatientName": PATIENT_NAME,
    "StudyID": 0x00200010,
    "AccessionNumber": 0x00080050,
    "StudyInstanceUID": 0x0020000D,
    "SeriesInstanceUID": 0x0020000E,
    "SOPInstanceUID": SOP_INSTANCE,
    "SOPClassUID": SOP_CLASS,
    "MediaStorageSOPInstanceUID": MEDIA_SOP_INSTANCE,
    "Modality": 0x00080060,
    "StudyDate": 0x00080020,
}
_ALL_VRS: Final = (
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB",
    b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM",
    b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV", b"ZZ", b"\0\0", b"ox", b"\xff\xff",
)  # fmt: skip
PYDICOM_DATA: Final = Path(pydicom.data.__file__).parent
_MAX_BASE: Final = 400_000
"""Bases larger than this are left out (they would make every campaign slower, not better)."""


@dataclass(frozen=True)
class Base:
    """One starting file: its data set with planted values, or its raw bytes."""

    label: str
    dataset: Dataset | None
    raw: bytes
    planted: bool


@dataclass(frozen=True)
class Mutant:
    """One hostile file: where it came from, what was done, and its bytes."""

    name: str
    kind: str
    detail: str
    base: str
    seed: int
    index: int
    data: bytes = field(repr=False)
    group: str = ""
    """Files of one group were made together (duplicates of one SOP Instance UID)."""

    @property
    def recipe(self) -> str:
        """A PHI-free description that reproduces the mutant with ``--seed``/``--index``."""
        return f"{self.kind}:{self.detail} base={self.base} seed={self.seed} index={self.index}"


def pydicom_test_files() -> list[Path]:
    """Every regular file among pydicom's test and character-set files, sorted."""
    found = [
        *(PYDICOM_DATA / "test_files").rglob("*"),
        *(PYDICOM_DATA / "charset_files").glob("*.dcm"),
    ]
    return sorted(p for p in found if p.is_file() and not p.is_symlink())


def _plant(ds: Dataset) -> None:
    """Put the planted identifying values where a PACS keeps them."""
    ds.PatientName = f"{FAMILY}^{GIVEN}"
    ds.PatientID = PATIENT_ID
    ds.OtherPatientIDs = f"{PATIENT_ID}-OLD"
    ds.PatientAddress = f"12 {STREET}"
    ds.StudyDescription = f"Study of {FAMILY} {GIVEN}"
    ds.PatientComments = f"Call {FAMILY} about {PATIENT_ID}"


def _encode(ds: Dataset) -> bytes | None:
    buffer = io.BytesIO()
    try:
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    except Exception:  # noqa: BLE001 - a file pydicom cannot write back is used raw
        return None
    return buffer.getvalue()


def _base_from(label: str, raw: bytes) -> Base:
    try:
        ds = pydicom.dcmread(io.BytesIO(raw), force=True)
        ds.file_meta  # noqa: B018 - force the meta to exist
        if "PixelData" in ds or "SOPClassUID" in ds:
            _plant(ds)
            if _encode(ds) is not None:
                return Base(label, ds, raw, True)
    except Exception:  # noqa: BLE001, S110 - an unreadable file is a raw base
        pass
    return Base(label, None, raw, False)


def _is_dicom(base: Base) -> bool:
    """Whether a base is DICOM at all (pydicom's folders hold READMEs too)."""
    return base.planted or base.raw[128:132] == b"DICM" or bool(layout(base.raw).elements)


def _demo_datasets() -> list[tuple[str, bytes]]:
    """Two demo CT images, encoded (the demo module is dicomveil's, so it is rebuilt here
    only through its public writer, in a temporary folder)."""
    import tempfile

    from dicomveil.demo import write_demo_study

    with tempfile.TemporaryDirectory() as folder:
        paths = write_demo_study(
            Path(folder), patients=1, series_per_study=1, images_per_series=2, rows=16, columns=16
        )
        return [(f"demo-{i}", p.read_bytes()) for i, p in enumerate(sorted(paths))]


@functools.cache
def bases(max_size: int = _MAX_BASE) -> tuple[Base, ...]:
    """The starting files, in a fixed order: demo images, then pydicom's test files."""
    found = [_base_from(label, raw) for label, raw in _demo_datasets()]
    for path in pydicom_test_files():
        if path.stat().st_size <= max_size:
            label = str(path.relative_to(PYDICOM_DATA))
            found.append(_base_from(label, path.read_bytes()))
    return tuple(base for base in found if _is_dicom(base))


def _uid(rng: random.Random) -> str:
    return f"2.25.{rng.getrandbits(120)}"


def _start(rng: random.Random, base: Base, sop_uid: str | None = None) -> bytes:
    """The base's bytes with a fresh SOP Instance UID (in the data set and the meta)."""
    if base.dataset is None:
        return base.raw
    ds = base.dataset.copy()
    ds.file_meta = FileMetaDataset(base.dataset.file_meta)
    uid = UID(sop_uid or _uid(rng))
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    return _encode(ds) or base.raw


# ---------------------------------------------------------------- recipes
# Each takes the random source and the starting bytes; returns (detail, bytes), or ``None``
# when it does not apply to these bytes (the mutator then picks another recipe).

Recipe = Callable[[random.Random, bytes], "tuple[str, bytes] | None"]


def _elements(data: bytes) -> tuple[Element, ...]:
    found = layout(data)
    return found.elements if found.walkable else ()


def truncate(rng: random.Random, data: bytes) -> tuple[str, bytes] | None:
    """Cut the file: anywhere, at an element boundary, or one byte into an element."""
    elements = _elements(data)
    where = rng.choice(["anywhere", "boundary", "inside", "meta"])
    if where == "boundary" and elements:
        cut = rng.choice(elements).start
    elif where == "inside" and elements:
        cut = rng.choice(elements).start + rng.randrange(1, 12)
    elif where == "meta":
        cut = rng.randrange(0, min(len(data), 300) + 1)
    else:
        cut = rng.randrange(0, len(data) + 1)
    return f"{where}@{cut}", data[:cut]


def length_field(rng: random.Random, data: bytes) -> tuple[str, bytes] | None:
    """Make an element's length lie: huge, odd, undefined, zero, or one off."""
    elements = _elements(data)
    if not elements:
        return None
    element = rng.choice(elements)
    short = element.length_size == 2
    how = rng.choice(["huge", "odd", "undefined", "zero", "plus1", "minus1", "max31"])
    value = {
        "huge": 0xFFF0 if short else 0xFFFFFFF0,
        "odd": element.length | 1,
        "undefined": 0xFFFF if short else UNDEFINED,
        "zero": 0,
        "plus1": element.length + 1,
        "minus1": max(0, element.length - 1),
        "max31": 0x7FFF if short else 0x7FFFFFFF,
    }[how]
    if element.length == UNDEFINED and how in ("odd", "plus1", "minus1"):
        value = rng.randrange(1, 1 << 20) | 1
    fmt = "<H" if short else "<I"
    value &= 0xFFFF if short else 0xFFFFFFFF
    patched = struct.pack(fmt, value)
    at = element.length_at
    return f"{element.tag:08X}:{how}", data[:at] + patched + data[at + element.length_size :]


def vr_bytes(rng: random.Random, data: bytes) -> tuple[str, bytes] | None:
    """Swap an element's VR for another (or garbage), the value left as it was; the
    identifying and routing elements are chosen most often."""
    elements = [e for e in _elements(data) if e.vr is not None]
    if not elements:
        return None
    favourites = [e for e in elements if e.tag in (PATIENT_NAME, PATIENT_ID_TAG, 0x00080060)]
    element = rng.choice(favourites if favourites and rng.random() < 0.5 else elements)
    old_long = element.vr in LONG_VRS
    vr = rng.choice(_ALL_VRS)
    value = data[element.value_at : element.end]
    if element.length == UNDEFINED or vr in LONG_VRS and not old_long or len(value) > 0xFFFF:
        # keep the length field's size (the bytes still walk), only the two VR bytes change
        vr = rng.choice([v for v in _ALL_VRS if (v in LONG_VRS) == old_long])
        patched = data[: element.start + 4] + vr + data[element.start + 6 :]
    else:
        encoded = encode_element(element.tag, vr, value, implicit=False)
        patched = data[: element.start] + encoded + data[element.end :]
    return f"{element.tag:08X}:{vr!r}", patched


def byte_flips(rng: random.Random, data: bytes) -> tuple[str, bytes] | None:
    """Flip a few bytes in the header, never in a tag (a changed tag could legitimately
    move a planted value to an attribute an option keeps)."""
    elements = _elements(data)
    if not elements:
        return None
    header_end = next((e.start for e in elements if e.tag == PIXEL_DATA), len(data))
    tags = {e.start + i for e in elements for i in range(4)}
    spots = [rng.randrange(132 if len(data) > 132 else 0, max(header_end, 1)) for _ in range(8)]
    out = bytearray(data)
    flipped = 0
    for spot in spots:
        if spot not in tags and spot < len(out):
            out[spot] ^= 1 << rng.randrange(8)
            flipped += 1
    return f"{flipped}", bytes(out)


def _nested(depth: int, implicit: bool, leaf: bytes) -> bytes:
    """``depth`` levels of undefined-length Content Sequences, ``leaf`` in the deepest."""
    opening = b"".join(
        (
            struct.pack("<HH", 0x0040, 0xA730)
            + (b"" if implicit else b"SQ\0\0")
            + struct.pack("<I", UNDEFINED)
            + struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED)
        )
        for _ in range(depth)
    )
    closing = (struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)) * (
        depth
    )
    return opening + leaf + closing


def deep_nesting(rng: random.Random, data: bytes) -> tuple[str, bytes] | None:
    """Nest Content Sequences hundreds to tens of thousands deep, a name at the bottom."""
    found = layout(data)
    if not found.walkable or not found.elements:
        return None
    depth = rng.choice([40, 300, 1100, 5000, 40000])
    name = f"{FAMILY}^{GIVEN}".encode()
    leaf = encode_element(
        PATIENT_NAME, b"PN", name + b" " * (len(name) % 2), implicit=found.implicit
    )
    blob = _nested(depth, found.implicit, leaf)
    existing = found.find(CONTENT_SEQUENCE)
    if existing is not None:
        data = data[: existing.start] + data[existing.end :]
        found = layout(data)
    after = next((e for e in found.elements if e.tag > CONTENT_SEQUENCE), None)
    at = after.start if after is not None else len(data)
    return f"depth={depth}", data[:at] + blob + data[at:]


def _deflated(data: bytes, mode: int) -> bytes:
    """Raw deflate of ``data``; segments ended by a full flush can be concatenated."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(mode)


@functools.cache
def _deflated_zeros(mebibytes: int) -> bytes:
    """``mebibytes`` MiB of zeros, deflated (made once: about 1 s per 256 MiB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(1 << 20)
    parts = [compressor.compress(zeros) for _ in range(mebibytes)]
    return b"".join(parts) + compressor.flush(zlib.Z_FULL_FLUSH)


def deflate_bomb(rng: random.Random, data: bytes, scale: int = 1) -> tuple[str, bytes] | None:
    """Re-encode as Deflated Explicit VR Little Endian with a tiny body that inflates to
    hundreds of MiB (zeros in a padding or private element, or a length that lies)."""
    found = layout(data)
    if not found.walkable or found.implicit or not found.meta or not found.elements:
        return None
    body = data[found.body_at :]
    size = rng.choice([32, 128, 256]) * scale << 20
    how = rng.choice(["padding", "private", "lying-length", "trailing"])
    if how == "private":  # in tag order: after the last element before group 0009
        cut = max((e.end for e in found.elements if e.tag < 0x00090010), default=found.body_at)
        cut -= found.body_at
        creator = encode_element(0x00090010, b"LO", b"FUZZ BOMB ", implicit=False)
        head, tail = body[:cut] + creator + struct.pack("<HH", 0x0009, 0x1000), body[cut:]
    else:
        head, tail = body + struct.pack("<HH", 0xFFFC, 0xFFFC), b""
    length = 0xFFFFFFF0 if how == "lying-length" else size
    head += b"OB\0\0" + struct.pack("<I", length)
    if how == "trailing":  # zeros after the data set, no element around them
        head = body
    parts = [_deflated(head, zlib.Z_FULL_FLUSH), _deflated_zeros(size >> 20)]
    parts.append(_deflated(tail, zlib.Z_FINISH))
    deflated = b"".join(parts)
    head = set_value(data[: found.body_at], 0x00020010, DEFLATED.encode(), b"UI", pad=b"\0")
    return f"{how}:{size >> 20}MiB", head + deflated


def charset_garbage(rng: random.Random, data: bytes) -> tuple[str, bytes] | None:
    """Declare a wrong, invalid or ISO 2022 character set and spoil the name with escapes,
    NULs and invalid bytes (the planted name stays in it, for the scrubber to find)."""
    if not layout(data).walkable:
        return None
    charsets = [
        b"ISO 2022 IR 87",
        b"\\ISO 2022 IR 87",
        b"ISO 2022 IR 13\\ISO 2022 IR 87",
        b"ISO_IR 192",
        b"GARBAGE",
        b"ISO_IR 100\0",
        b"ISO 2022 IR 149\\ISO 2022 IR 58",
        b"\x1b$B",
        b"",
    ]
    name = f"{FAMILY}^{GIVEN}".encode()
    names = [
        b"=\x1b$)C" + FAMILY.encode(),
        name[:9] + b"\0" + name[9:],
        name + b"\xff\xfe\xc3",
        b"\x1b$B" + name,
        name[:9] + b"\x1b(B" + name[9:],
        name.decode().encode("utf-16-le"),
        name + b"=\x1b$B\x1b(B=\x1b",
        b"\xc3\x28" + name,
        name + b"\\" + b"\x1b" * 5,
    ]
    charset, spoiled = rng.randrange(len(charsets)), rng.randrange(len(names))
    out = set_value(data, CHARSET, charsets[charset], b"CS")
    out = set_value(out, PATIENT_NAME, names[spoiled], b"PN")
    description = b"Study of " + names[spoiled].replace(b"^", b" ")
    out = set_value(out, STUDY_DESCRIPTION, description, b"LO")
    return f"charset{charset}-name{spoiled}", out


def _fragments(data: bytes) -> tuple[Element, list[int]] | None:
    """The encapsulated Pixel Data element and the offsets of its items."""
    pixel = next((e for e in _elements(data) if e.tag == PIXEL_DATA), None)
    if pixel is None or pixel.length != UNDEFINED:
        return None
    items, at = [], pixel.value_at
    while at + 8 <= pixel.end and struct.unpack_from("<HH", data, at) == (0xFFFE, 0xE000):
        items.append(at)
        at += 8 + struct.unpack_from("<I", data, at + 4)[0]
    return pixel, items


def broken_encapsulation(rng: random.Random, data: bytes) -> tuple[str, bytes] | None:
    """Damage encapsulated pixel data: item tags, fragment and offset-table lengths, the
    sequence delimiter; or give native pixel data an undefined length."""
    found = _fragments(data)
    if found is None:
        pixel = next((e for e in _elements(data) if e.tag == PIXEL_DATA), None)
        if pixel is None or pixel.length_size != 4:
            return None
        at = pixel.length_at
        return "native-undefined", data[:at] + struct.pack("<I", UNDEFINED) + data[at + 4 :]
    pixel, items = found
    if not items:
        return None
    how = rng.choice(
        ["item-tag", "no-delimiter", "fragment-huge", "fragment-odd", "offsets-huge", "nested"]
    )
    item = rng.choice(items)
    out = bytearray(data)
    if how == "item-tag":
        out[item : item + 4] = rng.choice(
            [struct.pack("<HH", 0xFFFE, 0xE00D), struct.pack("<HH", 0xFFFE, 0xE0DD), b"\0\0\0\0"]
        )
    elif how == "no-delimiter":
        end = pixel.end - 8
        if struct.unpack_from("<I", data, end)[0] != 0 or _tag_at(data, end) != SEQUENCE_END:
            return None
        del out[end : end + 8]
    elif how == "fragment-huge":
        out[item + 4 : item + 8] = struct.pack("<I", 0xFFFFFFF0)
    elif how == "fragment-odd":
        length = struct.unpack_from("<I", data, item + 4)[0]
        out[item + 4 : item + 8] = struct.pack("<I", length | 1)
    elif how == "offsets-huge":
        first = items[0]
        table = struct.pack("<II", 0, 0xFFFFFFF0)
        out[first : first + 8 + struct.unpack_from("<I", data, first + 4)[0]] = (
            struct.pack("<HHI", 0xFFFE, 0xE000, len(table)) + table
        )
    else:  # an item inside an item
        out[item + 4 : item + 8] = struct.pack("<I", UNDEFINED)
    return f"{how}@{item - pixel.start}", bytes(out)


def _tag_at(data: bytes, at: int) -> int:
    group, element = struct.unpack_from("<HH", data, at)
    return int((group << 16) | element)


def missing_identifiers(rng: random.Random, data: bytes) -> tuple[str, bytes] | None:
    """Delete (or empty) Type 1 UIDs and the identifiers output paths are built from."""
    if not layout(data).walkable:
        return None
    names = sorted(IDENTIFIER_TAGS)
    chosen = rng.sample(names, rng.choice([1, 1, 2, 3, len(names)]))
    empty = rng.random() < 0.3
    out = data
    for name in chosen:
        tag = IDENTIFIER_TAGS[name]
        if empty:
            vr = b"PN" if tag == PATIENT_NAME else b"UI" if name.endswith("UID") else b"LO"
            out = set_value(out, tag, b"", vr)
        else:
            out = delete_element(out, tag)
    if {"PatientID", "PatientName"} & set(chosen):
        # free text quoting an identifier the file no longer declares cannot be cleaned of
        # it (nothing says it identifies anyone): it goes too, so a planted value found in
        # an output is still a leak
        out = delete_element(delete_element(out, PATIENT_COMMENTS), STUDY_DESCRIPTION)
    return f"{'empty' if empty else 'deleted'}:{'+'.join(chosen)}", out


def hostile_uids(rng: random.Random, data: bytes) -> tuple[str, bytes] | None:
    """Put path traversal, absolute paths, NULs, separators and overlong values in UIDs."""
    if not layout(data).walkable:
        return None
    values = [
        f"../../{ESCAPE_MARK}".encode(),
        f"../../../../../../../../../../{ESCAPE_MARK}".encode(),
        f"/tmp/{ESCAPE_MARK}".encode(),
        b"1.2.3\0.4",
        f"1.2.3/../../{ESCAPE_MARK}".encode(),
        b"..",
        b".",
        b"1.2.3\\1.2.4",
        b"1" * 300,
        b"1.2. 3",
        f"C:\\{ESCAPE_MARK}".encode(),
        b"1.2.3\n4",
        b"\x1b[31m1.2.3",
    ]
    name = rng.choice(sorted(UID_TAGS))
    value = values[rng.randrange(len(values))]
    out = set_value(data, UID_TAGS[name], value, b"UI", pad=b"\0")
    if name == "SOPInstanceUID" and rng.random() < 0.5:  # the meta agrees with the data set
        out = set_value(out, MEDIA_SOP_INSTANCE, value, b"UI", pad=b"\0")
    return f"{name}={values.index(value)}", out


def wrong_vr_phi(rng: random.Random, data: bytes) -> tuple[str, bytes] | None:
    """Add identifying text under a VR other than the dictionary's (attributes outside the
    profile's table, and a name sent as a number)."""
    found = layout(data)
    if not found.walkable or found.implicit:
        return None
    phi = f"{FAMILY} {GIVEN} {PATIENT_ID}".encode()
    neutral = b"FUZZ GENERAL"  # attributes an option may keep get no planted value
    choices = [
        (0x00400400, b"OB", phi),  # Comments on the Scheduled Procedure Step (LT)
        (0x00400400, b"LO", phi),
        (0x00140104, b"SH", phi),  # Secondary Reviewer Name (PN)
        (0x00403001, b"UN", phi),  # Confidentiality Constraint on Patient Data Description
        (0x00081060, b"LO", phi),  # Name of Physician(s) Reading Study (PN)
        (PATIENT_NAME, b"US", phi),
        (PATIENT_NAME, b"OB", phi),
        (0x00080080, b"FD", neutral),  # Institution Name (kept by an option)
        (0x00080060, b"FD", neutral),  # Modality (kept)
        (0x00080060, b"US", b"CT"),
    ]
    tag, vr, text = rng.choice(choices)
    out = delete_element(data, tag)
    out = set_value(out, tag, text, b"LO")
    element = layout(out).find(tag)
    if element is None:
        return None
    value = out[element.value_at : element.end]
    encoded = encode_element(tag, vr, value, implicit=False)
    return f"{tag:08X}:{vr.decode()}", out[: element.start] + encoded + out[element.end :]


def long_text(rng: random.Random, data: bytes, scale: int = 1) -> tuple[str, bytes] | None:
    """Free text tens of kB to MBs long, shaped to make backtracking patterns (e-mail, URL,
    phone, name lists) slow, with the planted name in it, in attributes the clean options
    scrub."""
    found = layout(data)
    if not found.walkable or found.implicit:
        return None
    size = rng.choice([30, 100, 200]) * scale * 1000
    unit = rng.choice(
        [b"a", b"a.", b"a@", b"x-", b"1 ", b"a.b@", b"+1 555 ", b"http://a", b"@.", b"aa "]
    )
    text = unit * (size // len(unit))
    name = f" {FAMILY} {GIVEN} ".encode()
    middle = len(text) // 2
    text = text[:middle] + name + text[middle:]
    tag, vr = rng.choice(
        [
            (0x00204000, b"LT"),  # Image Comments
            (0x00104000, b"LT"),  # Patient Comments
            (0x00081030, b"LO"),  # Study Description
            (0x00324000, b"LT"),  # Study Comments
            (0x0040A160, b"UT"),  # Text Value, top level
        ]
    )
    if len(text) > 0xFFFE and vr not in LONG_VRS:
        vr = b"UT"  # a 2-byte length cannot hold it: the file says UT (a lying VR)
    out = set_value(delete_element(data, tag), tag, text, vr)
    return f"{tag:08X}:{unit!r}x{size}", out


def not_dicom(rng: random.Random, data: bytes) -> tuple[str, bytes] | None:
    """Something that is not DICOM at all: empty, text with a name, random, a bare preamble."""
    how = rng.choice(["empty", "text", "random", "preamble", "zeros"])
    out = {
        "empty": b"",
        "text": f"PatientName: {FAMILY}^{GIVEN}\nID {PATIENT_ID}\n".encode() * 20,
        "random": rng.randbytes(rng.randrange(1, 9000)),
        "preamble": bytes(128) + b"DICM",
        "zeros": bytes(rng.randrange(1, 70000)),
    }[how]
    return how, out


KINDS: Final[dict[str, tuple[Recipe, int]]] = {
    "truncate": (truncate, 12),
    "length": (length_field, 14),
    "vr": (vr_bytes, 10),
    "flip": (byte_flips, 8),
    "nesting": (deep_nesting, 4),
    "deflate-bomb": (deflate_bomb, 3),
    "charset": (charset_garbage, 10),
    "encapsulation": (broken_encapsulation, 8),
    "missing-id": (missing_identifiers, 12),
    "hostile-uid": (hostile_uids, 8),
    "wrong-vr": (wrong_vr_phi, 6),
    "long-text": (long_text, 3),
    "not-dicom": (not_dicom, 2),
}
"""Recipe and weight of each kind (``duplicate`` groups are made by :func:`mutants`)."""


def _rng(seed: int, index: int) -> random.Random:
    digest = hashlib.sha256(f"dicomveil-fuzz:{seed}:{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


HOSTILE_NAMES: Final = (
    "-q[/bold]x",  # rich markup (the "/" makes a folder "q[" holding "bold]x...")
    "-[/red]",
    "-\x1b[31mred",  # a terminal escape
    "-line\nbreak",
    "-" + "n" * 226,  # 251 bytes or so with prefix and suffix: NAME_MAX is 255
    "-\u00e9\u00e8 caf\u00e9",
    "- spaced  ",
)
"""Pieces of file names a terminal, a markup parser or a path join can trip on; one mutant
in four carries one (a name never holds a planted value: names are printed, by design)."""


def _hostile_name(index: int) -> str:
    return HOSTILE_NAMES[(index // 4) % len(HOSTILE_NAMES)] if index % 4 == 3 else ""


def mutant(
    seed: int,
    index: int,
    *,
    kinds: Sequence[str] | None = None,
    base_pool: Sequence[Base] | None = None,
    bomb_scale: int = 1,
) -> Mutant:
    """Return mutant ``index`` of campaign ``seed`` (deterministic).

    ``kinds`` restricts the recipes; ``bomb_scale`` multiplies the sizes of deflate bombs and
    long texts (the long campaign uses larger ones).
    """
    rng = _rng(seed, index)
    pool = base_pool if base_pool is not None else bases()
    names = list(kinds) if kinds is not None else list(KINDS)
    weights = [KINDS[name][1] for name in names]
    for _ in range(50):
        kind = rng.choices(names, weights)[0]
        base = rng.choice(pool)
        start = _start(rng, base)
        recipe = KINDS[kind][0]
        if kind in ("deflate-bomb", "long-text"):  # the two that scale
            made = (deflate_bomb if kind == "deflate-bomb" else long_text)(rng, start, bomb_scale)
        else:
            made = recipe(rng, start)
        if made is not None:
            detail, data = made
            name = f"{index:06d}{_hostile_name(index)}-{kind}.dcm"
            return Mutant(name, kind, detail, base.label, seed, index, data)
    raise RuntimeError(f"no recipe applies (seed {seed}, index {index})")


def duplicates(seed: int, index: int, *, base_pool: Sequence[Base] | None = None) -> list[Mutant]:
    """Three files sharing one SOP Instance UID: an original, an identical copy, and one
    with different content (another Instance Number and Study Description)."""
    rng = _rng(seed, index)
    pool = [b for b in (base_pool if base_pool is not None else bases()) if b.dataset is not None]
    base = rng.choice(pool)
    uid = _uid(rng)
    first = _start(rng, base, uid)
    assert base.dataset is not None
    ds = base.dataset.copy()
    ds.file_meta = FileMetaDataset(base.dataset.file_meta)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID(uid)
    ds.InstanceNumber = int(ds.get("InstanceNumber") or 0) + 1000
    ds.SeriesDescription = "DIFFERENT CONTENT"
    other = _encode(ds) or first + b"\0\0"
    group = f"dup{index:06d}"
    return [
        Mutant(f"{index:06d}-duplicate-a.dcm", "duplicate", "first", base.label, seed, index, first,
               group),
        Mutant(f"{index:06d}-duplicate-b.dcm", "duplicate", "identical", base.label, seed, index,
               first, group),
        Mutant(f"{index:06d}-duplicate-c.dcm", "duplicate", "different", base.label, seed, index,
               other, group),
    ]  # fmt: skip


def mutants(
    seed: int,
    count: int,
    *,
    start: int = 0,
    kinds: Sequence[str] | None = None,
    duplicate_every: int = 50,
    bomb_scale: int = 1,
) -> Iterator[Mutant]:
    """Yield about ``count`` mutants (indices ``start`` on); every ``duplicate_every``-th
    index is a group of three duplicates instead (0: none)."""
    for index in range(start, start + count):
        if duplicate_every and index % duplicate_every == duplicate_every - 1:
            yield from duplicates(seed, index)
        else:
            yield mutant(seed, index, kinds=kinds, bomb_scale=bomb_scale)


def write(mutant_list: Sequence[Mutant], folder: Path) -> list[Path]:
    """Write mutants into ``folder`` under their names; return the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for item in mutant_list:
        path = folder / item.name
        path.parent.mkdir(parents=True, exist_ok=True)  # a name with "/" makes a folder
        path.write_bytes(item.data)
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    """Write one mutant (or a duplicate group) to ``--out``: reproduce a campaign finding."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder to write into")
    parser.add_argument("--bomb-scale", type=int, default=1)
    parser.add_argument("--duplicates", action="store_true", help="the index is a group")
    args = parser.parse_args(argv)
    made = (
        duplicates(args.seed, args.index)
        if args.duplicates
        else [mutant(args.seed, args.index, bomb_scale=args.bomb_scale)]
    )
    for path, item in zip(write(made, args.out), made, strict=True):
        print(f"{path}  {item.recipe}")


if __name__ == "__main__":
    main()
