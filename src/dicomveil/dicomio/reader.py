"""Reading DICOM instances: header parsed, pixel data located but never loaded.

A tolerant reader: files without the 128-byte preamble, without File Meta Information
(legacy raw data sets), with a missing Transfer Syntax UID or with a data set encoded
differently from what the meta declares are read when they are recognisably DICOM.
Anything else raises :class:`~dicomveil.errors.MalformedInputError` with a message that
names the problem and never an attribute value.
"""

from __future__ import annotations

import os
import re
import struct
import warnings
import zlib
from collections.abc import MutableSequence
from pathlib import Path
from typing import Final, TypeVar

from pydicom import config
from pydicom.charset import convert_encodings, python_encoding
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pydicom.values import convert_string

from dicomveil.dicomio._model import (
    DEFAULT_DEFER_SIZE,
    DEFAULT_MAX_HEADER_BYTES,
    DEFLATED_TRANSFER_SYNTAXES,
    Instance,
    PixelSpan,
)
from dicomveil.dicomio._scan import (
    _VR_NAMES,
    UNDEFINED,
    Window,
    element_header,
    pixel_extent,
    scan_dataset,
)
from dicomveil.errors import MalformedInputError, UnsupportedInputError

__all__ = ["REQUIRED_UIDS", "is_dicom", "read_instance"]

REQUIRED_UIDS: Final = (
    (0x00080016, "SOPClassUID"),
    (0x00080018, "SOPInstanceUID"),
    (0x0020000D, "StudyInstanceUID"),
    (0x0020000E, "SeriesInstanceUID"),
)
"""Type 1 identifying UIDs every instance must have to be de-identified consistently."""

_FIRST_READ: Final = 16 * 1024
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
        if vr in _VR_NAMES:
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


def _layout(head: bytes) -> tuple[bool, int] | None:
    """Return ``(has_preamble, offset after any preamble/prefix)`` or ``None`` if not DICOM."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True, 132
    if head[:4] == b"DICM":
        return False, 4
    if head[:2] == b"\x02\x00" and head[4:6] in _VR_NAMES:
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
    return _layout(head) is not None


def _read_meta(win: Window, pos: int, budget: int) -> tuple[dict[BaseTag, RawDataElement], int]:
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
        vr_name = None if vr is None else _VR_NAMES[vr]
        meta[BaseTag(tag)] = RawDataElement(
            BaseTag(tag), vr_name, length, value, pos + hdr, vr is None, True
        )
        pos += hdr + length
    return meta, pos


def _text(raw: RawDataElement | None) -> str:
    if raw is None or not raw.value:
        return ""
    return raw.value.decode("ascii", "replace").strip("\0 ")


def _inflate(win: Window, pos: int, limit: int) -> bytes:
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


def _encoding(win: Window, pos: int, ts: str) -> tuple[UID, bool, bool]:
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
    looks_explicit = head[4:6] in _VR_NAMES
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


def _check_uids(elements: dict[BaseTag, RawDataElement]) -> None:
    missing = []
    for tag, keyword in REQUIRED_UIDS:
        raw = elements.get(BaseTag(tag))
        if raw is None or (raw.value is not None and not raw.value.strip(b"\0 ")):
            missing.append(keyword)
    if missing:
        raise MalformedInputError("missing " + ", ".join(missing))


_D = TypeVar("_D", bound=Dataset)
_TEMPLATES: dict[type, dict[str, object]] = {}


def _template(cls: type[Dataset]) -> dict[str, object]:
    """Return the instance attributes of an empty `cls`, built once by its constructor."""
    template = _TEMPLATES.get(cls)
    if template is None:
        if cls is FileDataset:
            sample: Dataset = FileDataset("", {}, None, FileMetaDataset(), False, True)
        else:
            sample = cls()
        template = _TEMPLATES[cls] = dict(sample.__dict__)
    return template


def _new_dataset(cls: type[_D], elements: dict[BaseTag, RawDataElement]) -> _D:
    """Return a `cls` holding `elements`, without running pydicom's per-attribute hooks.

    ``Dataset.__setattr__`` checks every attribute name against the DICOM dictionary,
    which makes constructing a data set cost more than scanning its elements. The
    attributes are copied from an instance made by the real constructor (mutable ones
    copied afresh), so the object is indistinguishable from a constructed one.
    """
    obj = object.__new__(cls)
    attrs = obj.__dict__
    for key, value in _template(cls).items():
        attrs[key] = value.copy() if isinstance(value, dict | list) else value
    attrs["_dict"] = elements
    return obj


def _file_dataset(
    path: Path,
    mtime: float,
    elements: dict[BaseTag, RawDataElement],
    meta: FileMetaDataset,
    implicit: bool,
    little: bool,
    parent_encoding: str | list[str] | None = None,
) -> FileDataset:
    ds = _new_dataset(FileDataset, elements)
    attrs = ds.__dict__
    attrs["file_meta"] = meta
    attrs["filename"] = str(path)
    attrs["timestamp"] = mtime
    attrs["_read_implicit"] = attrs["_is_implicit_VR"] = implicit
    attrs["_read_little"] = attrs["_is_little_endian"] = little
    if parent_encoding is not None:
        attrs["_parent_encoding"] = parent_encoding
    ds.set_original_encoding(implicit, little, _character_set(ds, elements))
    return ds


def _as_encoding(value: str | MutableSequence[str]) -> str | list[str]:
    return value if isinstance(value, str) else list(value)


def _character_set(ds: Dataset, elements: dict[BaseTag, RawDataElement]) -> str | list[str]:
    """Return the Python encodings of `ds`, from the raw Specific Character Set.

    The element is left raw (so the writer can tell it is unchanged). pydicom corrects
    misspelt terms (``ISO-IR 100``) and falls back to the default for unknown ones, with
    a warning; reading stays quiet and leaves that warning to whoever decodes the text.
    """
    raw = elements.get(BaseTag(0x00080005))
    if raw is None or not raw.value:
        return ds._character_set
    value = convert_string(raw.value, raw.is_little_endian)
    terms = [value] if isinstance(value, str) else list(value)
    if all(term in python_encoding or not term for term in terms):
        return convert_encodings(value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convert_encodings(value)


def read_instance(
    path: Path | str,
    *,
    require_uids: bool = True,
    defer_size: int = DEFAULT_DEFER_SIZE,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
) -> Instance:
    """Read the header of the DICOM file at `path` and locate its pixel data.

    Only the elements before the top-level pixel data, and those after it, are parsed;
    the pixel data is measured (walking fragment headers when encapsulated) but never
    read, so memory stays bounded whatever the file size. Deflated data sets are
    inflated in memory (up to `max_header_bytes`).

    Parameters
    ----------
    path
        The file to read.
    require_uids
        Raise when SOPClassUID, SOPInstanceUID, StudyInstanceUID or SeriesInstanceUID is
        missing or empty (on by default: such a file cannot be de-identified consistently).
    defer_size
        Top-level values longer than this are left in the file: pydicom loads them when
        they are accessed, the writer copies them as bytes when they are not.
    max_header_bytes
        Largest amount of element values (or inflated data) held in memory.

    Returns
    -------
    Instance
        The header data set, trailing elements, pixel span and encoding.

    Raises
    ------
    MalformedInputError
        Empty file, not DICOM, truncated, wrong element length, or a required UID missing.
    UnsupportedInputError
        The header (or inflated data set) is larger than `max_header_bytes`.
    OSError
        The file cannot be opened or read.

    References
    ----------
    PS3.10 section 7.1 (DICOM File Meta Information); PS3.5 section A.5 (deflate).
    """
    path = Path(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        return _read(path, fd, require_uids, defer_size, max_header_bytes)
    except (MalformedInputError, UnsupportedInputError):
        raise
    except (struct.error, ValueError, UnicodeError, KeyError, IndexError, TypeError) as exc:
        raise MalformedInputError(f"not readable DICOM ({type(exc).__name__})") from exc
    except RecursionError as exc:
        raise UnsupportedInputError("sequences are nested too deeply") from exc
    finally:
        os.close(fd)


def _read(path: Path, fd: int, require_uids: bool, defer_size: int, budget: int) -> Instance:
    stat = os.fstat(fd)
    size = stat.st_size
    if size == 0:
        raise MalformedInputError("empty file")
    head = os.pread(fd, min(size, _FIRST_READ), 0)
    layout = _layout(head)
    if layout is None:
        raise MalformedInputError("not DICOM: no DICM prefix and no recognisable data set")
    has_preamble, pos = layout
    win = Window(fd, size, head, 0)
    meta_elements, pos = _read_meta(win, pos, budget)
    ts = _text(meta_elements.get(BaseTag(0x00020010)))
    deflated = ts in DEFLATED_TRANSFER_SYNTAXES
    if deflated:
        data = _inflate(win, pos, budget)
        win, pos = Window(None, len(data), data, 0), 0
        defer_size = len(data) + 1  # nothing to defer to: the file holds compressed bytes
    uid, implicit, little = _encoding(win, pos, ts)
    end = win.size
    scan = scan_dataset(
        win,
        pos,
        end,
        implicit,
        little,
        stop_at_pixels=True,
        defer_size=defer_size,
        budget=budget,
    )
    if require_uids:
        _check_uids(scan.elements)
    meta = _new_dataset(FileMetaDataset, meta_elements)
    meta.set_original_encoding(False, True, "iso8859")
    dataset = _file_dataset(path, stat.st_mtime, scan.elements, meta, implicit, little)
    pixel: PixelSpan | None = None
    trailing_elements: dict[BaseTag, RawDataElement] = {}
    padding = scan.padding
    if scan.pixel_tag is not None:
        tag, vr, hdr, length, encapsulated = pixel_extent(win, scan.stop, end, implicit, little)
        pixel = PixelSpan(
            path=path,
            offset=scan.stop,
            length=length,
            tag=tag,
            vr=vr,
            header_length=hdr,
            encapsulated=encapsulated,
            data=win.take(scan.stop, length) if deflated else None,
        )
        after = scan.stop + length
        if after < end:
            rest = scan_dataset(
                win,
                after,
                end,
                implicit,
                little,
                stop_at_pixels=False,
                defer_size=defer_size,
                budget=budget - scan.kept,
            )
            trailing_elements, padding = rest.elements, rest.padding
    trailing = _file_dataset(
        path,
        stat.st_mtime,
        trailing_elements,
        _new_dataset(FileMetaDataset, {}),
        implicit,
        little,
        _as_encoding(dataset.original_character_set),
    )
    return Instance(
        path=path,
        dataset=dataset,
        trailing=trailing,
        pixel=pixel,
        transfer_syntax=uid,
        is_implicit_vr=implicit,
        is_little_endian=little,
        is_deflated=deflated,
        has_preamble=has_preamble,
        has_file_meta=bool(meta_elements),
        file_size=size,
        padding=padding,
    )
