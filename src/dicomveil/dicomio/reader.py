"""Reading DICOM instances: header parsed, pixel data located but never loaded.

A tolerant reader: files without the 128-byte preamble, without File Meta Information
(legacy raw data sets), with a missing Transfer Syntax UID or with a data set encoded
differently from what the meta declares are read when they are recognisably DICOM.
Anything else raises :class:`~dicomveil.errors.MalformedInputError` with a message that
names the problem and never an attribute value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from pydicom.dataelem import RawDataElement
from pydicom.dataset import FileMetaDataset
from pydicom.tag import BaseTag

from dicomveil.dicomio._datasets import as_encoding, file_dataset, new_dataset
from dicomveil.dicomio._detect import (
    FIRST_READ,
    detect_encoding,
    inflate,
    is_dicom,
    layout,
    read_meta,
    text_value,
)
from dicomveil.dicomio._encode import attach_source_window
from dicomveil.dicomio._model import (
    DEFAULT_DEFER_SIZE,
    DEFAULT_MAX_HEADER_BYTES,
    DEFLATED_TRANSFER_SYNTAXES,
    Instance,
    PixelSpan,
)
from dicomveil.dicomio._scan import scan_dataset
from dicomveil.dicomio._walk import pixel_extent
from dicomveil.dicomio._window import Window
from dicomveil.errors import (
    DicomveilError,
    MalformedInputError,
    NotAnInstanceError,
    UnsupportedInputError,
)

__all__ = ["REQUIRED_UIDS", "is_dicom", "read_instance"]

REQUIRED_UIDS: Final = (
    (0x00080016, "SOPClassUID"),
    (0x00080018, "SOPInstanceUID"),
    (0x0020000D, "StudyInstanceUID"),
    (0x0020000E, "SeriesInstanceUID"),
)
"""Type 1 identifying UIDs every instance must have to be de-identified consistently."""


_MEDIA_DIRECTORY: Final = "1.2.840.10008.1.3.10"


def _check_uids(
    elements: dict[BaseTag, RawDataElement], meta: dict[BaseTag, RawDataElement]
) -> None:
    """Refuse DICOMDIRs, and instances without the UIDs that tie them to a study."""
    if text_value(meta.get(BaseTag(0x00020002))) == _MEDIA_DIRECTORY:
        # a DICOMDIR indexes a file set (patient names included); it is not an instance
        raise NotAnInstanceError("a DICOMDIR (Media Storage Directory) is not an instance")
    missing = []
    for tag, keyword in REQUIRED_UIDS:
        raw = elements.get(BaseTag(tag))
        if raw is None or (raw.value is not None and not raw.value.strip(b"\0 ")):
            missing.append(keyword)
    if missing:
        raise MalformedInputError("missing " + ", ".join(missing))


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
        Empty file, not DICOM, truncated, wrong element length, or a required UID missing;
        the message never quotes a value, and the error carries no exception of pydicom's
        (whose message could).
    UnsupportedInputError
        The header (or inflated data set) is larger than `max_header_bytes`, sequences
        nest deeper than 64 levels, or (with `require_uids`) the file is a DICOMDIR.
    OSError
        The file cannot be opened or read.

    References
    ----------
    PS3.10 section 7.1 (DICOM File Meta Information); PS3.5 section A.5 (deflate).
    """
    path = Path(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    failure: DicomveilError
    try:
        return _read(path, fd, require_uids, defer_size, max_header_bytes)
    except (DicomveilError, OSError, MemoryError):
        raise
    except RecursionError:
        failure = UnsupportedInputError("sequences are nested too deeply")
    except Exception as exc:  # noqa: BLE001 - pydicom's own exceptions included
        # pydicom's messages may quote a value: only the exception's type is kept, and the
        # error is raised outside this handler so that it carries no context either
        failure = MalformedInputError(f"not readable DICOM ({type(exc).__name__})")
    finally:
        os.close(fd)
    raise failure


def _read(path: Path, fd: int, require_uids: bool, defer_size: int, budget: int) -> Instance:
    stat = os.fstat(fd)
    size = stat.st_size
    if size == 0:
        raise MalformedInputError("empty file")
    head = os.pread(fd, min(size, FIRST_READ), 0)
    found = layout(head)
    if found is None:
        raise MalformedInputError("not DICOM: no DICM prefix and no recognisable data set")
    has_preamble, pos = found
    win = Window(fd, size, head, 0)
    meta_elements, pos = read_meta(win, pos, budget)
    ts = text_value(meta_elements.get(BaseTag(0x00020010)))
    deflated = ts in DEFLATED_TRANSFER_SYNTAXES
    if deflated:
        data = inflate(win, pos, budget)
        win, pos = Window(None, len(data), data, 0), 0
        defer_size = len(data) + 1  # nothing to defer to: the file holds compressed bytes
    uid, implicit, little = detect_encoding(win, pos, ts)
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
        _check_uids(scan.elements, meta_elements)
    header_window = (win.base, win.buf)
    meta = new_dataset(FileMetaDataset, meta_elements)
    meta.set_original_encoding(False, True, "iso8859")
    dataset = file_dataset(path, stat.st_mtime, scan.elements, meta, implicit, little)
    attach_source_window(dataset, *header_window)
    pixel: PixelSpan | None = None
    trailing_elements: dict[BaseTag, RawDataElement] = {}
    trailing_window = (0, b"")
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
            trailing_window = (win.base, win.buf)
    trailing = file_dataset(
        path,
        stat.st_mtime,
        trailing_elements,
        new_dataset(FileMetaDataset, {}),
        implicit,
        little,
        as_encoding(dataset.original_character_set),
    )
    attach_source_window(trailing, *trailing_window)
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
