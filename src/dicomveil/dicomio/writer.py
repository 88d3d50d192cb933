"""Writing de-identified instances: fresh meta, header re-encoded, pixel bytes copied.

The output is assembled as parts (bytes, and spans of the source file) and written to a
temporary file next to the destination, which is renamed over it only when complete:
no half-written file is ever visible at the destination.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import os
import secrets
import struct
import zlib
from pathlib import Path
from typing import Final

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from dicomveil.dicomio._copy import write_parts
from dicomveil.dicomio._encode import Parts, SourceSpan, encode_elements, sorted_tags
from dicomveil.dicomio._meta import alignment_padding, encode_file_meta
from dicomveil.dicomio._model import PIXEL_DATA_TAGS, Instance, PixelSpan, WriteResult
from dicomveil.dicomio._window import UNDEFINED
from dicomveil.errors import DeidentificationError
from dicomveil.paths import check_segment

__all__ = ["encoded_parts", "write_file", "write_instance"]

ALIGN_ABOVE: Final = 8 * 1024 * 1024
"""Pixel data at least this long is page-aligned like its source (see alignment_padding)."""


def _uid(ds: Dataset, tag: int, keyword: str) -> str:
    """Return the UID value of `tag`, read from the raw bytes when it was not converted."""
    elem = ds._dict.get(BaseTag(tag))
    value: object = None
    if isinstance(elem, RawDataElement):
        value = elem.value.decode("ascii", "replace") if elem.value else None
    elif elem is not None:
        value = elem.value
    if not value or not isinstance(value, str):
        raise DeidentificationError(f"the output lacks {keyword}")
    return value


_Run = tuple[Dataset, list[BaseTag]]


def _runs(dataset: Dataset, trailing: Dataset | None) -> list[_Run]:
    """Return the elements of both data sets as ascending runs of ``(source, tags)``."""
    ds_tags = sorted_tags(dataset)
    tr_tags = sorted_tags(trailing) if trailing is not None else []
    if trailing is None or not tr_tags:
        return [(dataset, ds_tags)]
    if not ds_tags or int(ds_tags[-1]) < int(tr_tags[0]):
        return [(dataset, ds_tags), (trailing, tr_tags)]
    if set(map(int, ds_tags)) & set(map(int, tr_tags)):
        raise ValueError("an element is in both the data set and the trailing elements")
    merged = sorted([(int(t), 0, t) for t in ds_tags] + [(int(t), 1, t) for t in tr_tags])
    runs: list[_Run] = []
    for _, which, tag in merged:
        source = dataset if which == 0 else trailing
        if not runs or runs[-1][0] is not source:
            runs.append((source, []))
        runs[-1][1].append(tag)
    return runs


def _split(runs: list[_Run], split: int | None) -> tuple[list[_Run], list[_Run]]:
    """Split `runs` into the elements before and after the tag `split`."""
    if split is None:
        return runs, []
    before: list[_Run] = []
    after: list[_Run] = []
    for source, tags in runs:
        cut = bisect.bisect_left(tags, split, key=int)
        before.append((source, tags[:cut]))
        after.append((source, tags[cut:]))
    return before, after


def output_encoding(instance: Instance) -> tuple[bool, bool]:
    """Return ``(implicit VR, little endian)`` of the output: that of its transfer syntax."""
    uid = instance.transfer_syntax
    if uid.is_transfer_syntax:
        return uid.is_implicit_VR, uid.is_little_endian
    return instance.is_implicit_vr, instance.is_little_endian


def _add_pixel(
    body: Parts, instance: Instance, pixel: PixelSpan, implicit: bool, little: bool
) -> None:
    """Append the pixel data element: copied as encoded, or re-headed when the encoding
    of the output differs from the source (the value is still copied byte for byte)."""
    same = (implicit, little) == (instance.is_implicit_vr, instance.is_little_endian)
    offset, length = pixel.offset, pixel.length
    if not same:
        if not little or not instance.is_little_endian:
            raise DeidentificationError("cannot change the byte order of pixel data")
        size = UNDEFINED if pixel.encapsulated else pixel.value_length
        tag = (pixel.tag >> 16, pixel.tag & 0xFFFF)
        if implicit:
            body.add(struct.pack("<HHL", *tag, size))
        else:
            vr = pixel.vr or ("OB" if pixel.encapsulated else _native_pixel_vr(instance))
            body.add(struct.pack("<HH2sHL", *tag, vr.encode("ascii"), 0, size))
        offset, length = offset + pixel.header_length, length - pixel.header_length
    if pixel.data is not None:
        body.add(pixel.data if same else pixel.data[pixel.header_length :])
    elif instance.is_deflated:
        raise ValueError("a deflated instance needs its pixel data in memory")
    else:
        body.span(offset, length)


def _native_pixel_vr(instance: Instance) -> str:
    bits = instance.dataset.get("BitsAllocated", 16)
    return "OB" if isinstance(bits, int) and bits <= 8 else "OW"


def _assemble(
    instance: Instance, dataset: Dataset, trailing: Dataset | None
) -> list[bytes | SourceSpan]:
    """Return the output as parts: meta, header, pixel data, trailing elements."""
    sop_class = _uid(dataset, 0x00080016, "SOPClassUID")
    sop_instance = _uid(dataset, 0x00080018, "SOPInstanceUID")
    body = Parts()
    implicit, little = output_encoding(instance)
    pixel = instance.pixel
    own_pixels = any(t in dataset._dict for t in PIXEL_DATA_TAGS)
    if trailing is not None and any(t in trailing._dict for t in PIXEL_DATA_TAGS):
        raise ValueError("trailing elements must not hold pixel data")
    split = pixel.tag if pixel is not None and not own_pixels else None
    before, after = _split(_runs(dataset, trailing), split)
    spans = not instance.is_deflated
    for source, tags in before:
        encode_elements(source, tags, implicit, little, body, allow_spans=spans)
    padding = 0
    if split is not None and pixel is not None:
        _add_pixel(body, instance, pixel, implicit, little)
        span = body.items[-1] if body.items else None
        if isinstance(span, SourceSpan) and span.length >= ALIGN_ABOVE:
            meta_size = len(encode_file_meta(sop_class, sop_instance, instance.transfer_syntax))
            padding = alignment_padding(meta_size + body.size - span.length, span.offset)
        for source, tags in after:
            encode_elements(source, tags, implicit, little, body, allow_spans=spans)
    meta = encode_file_meta(sop_class, sop_instance, instance.transfer_syntax, padding=padding)
    if not instance.is_deflated:
        return [meta, *body.finish()]
    deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    chunks = [deflater.compress(part) for part in body.finish() if isinstance(part, bytes)]
    chunks.append(deflater.flush())
    return [meta, b"".join(chunks)]


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_instance(
    instance: Instance,
    dataset: Dataset,
    trailing: Dataset | None,
    dest: Path | str,
    *,
    fsync: bool = False,
    hash_output: bool = False,
) -> WriteResult:
    """Write `dataset` (and `trailing`) with the pixel data of `instance` to `dest`.

    The output has a zeroed preamble, a fresh File Meta Information group (version,
    Media Storage SOP Class/Instance UIDs taken from `dataset`, the input's transfer
    syntax, dicomveil's implementation UID and version name; no AE titles, no private
    information of the source), the header data set in the transfer syntax of the input
    (re-deflated when the input was deflated), the pixel data element copied byte for
    byte from the source file, then the trailing elements. For pixel data of 8 MiB or
    more the meta also holds up to 4 KiB of zero-filled (0002,0102) Private Information
    (creator ``IMPLEMENTATION_CLASS_UID + ".1"``) that aligns the copy with the source's
    pages, which makes the kernel copy about 1.7 times faster. Elements of `dataset` that
    sort after the pixel data, and elements of `trailing` that sort before it, are
    placed by tag. When `dataset` holds its own pixel data element the source pixel
    data is not copied; to drop it, pass ``dataclasses.replace(instance, pixel=None)``.

    The file is written to ``.<name>.<random>.part`` in the destination folder and
    renamed over `dest` only when complete; on any error it is removed and `dest` is
    left as it was.

    Parameters
    ----------
    instance
        The instance as read (encoding, pixel span, source path).
    dataset
        The header data set to write (usually the de-identified ``instance.dataset``).
    trailing
        The elements to write after the pixel data, or ``None``.
    dest
        The output path; its folder must exist.
    fsync
        Flush the file and its folder to stable storage before returning. Off by
        default for speed: a process that dies never leaves a partial file at `dest`
        (at most a ``.part`` file, after SIGKILL), but without `fsync` a power loss may
        leave recent outputs empty or short.
    hash_output
        Compute the SHA-256 of the output. This reads the pixel data through user
        space (about 1.7 GB/s per core) instead of a kernel copy, so it is off by
        default.

    Returns
    -------
    WriteResult
        Size, and SHA-256 when asked for.

    Raises
    ------
    DeidentificationError
        SOPClassUID/SOPInstanceUID missing or invalid, or an element cannot be encoded.
    MalformedInputError
        The source file shrank since it was read.
    OSError
        The destination cannot be written.
    """
    parts = _assemble(instance, dataset, trailing)
    return write_file(Path(dest), parts, instance.path, fsync=fsync, hash_output=hash_output)


def write_file(
    dest: Path | str,
    parts: list[bytes | SourceSpan],
    source: Path | str | int,
    *,
    fsync: bool = False,
    hash_output: bool = False,
) -> WriteResult:
    """Write ``parts`` (bytes, and spans copied from ``source``) atomically to ``dest``.

    The file is written to ``.<name>.<random>.part`` next to `dest` and renamed over it
    only when complete (see :func:`write_instance` for `fsync` and `hash_output`).
    ``source`` is a path, or a file descriptor open for reading (left open). `dest` is
    built by the caller through :mod:`dicomveil.paths` (its folder proven to lie inside its
    root); its name is checked here to be one safe segment.

    Raises
    ------
    UnsafePathError
        When the name of `dest` is not one safe path segment.
    """
    hasher = hashlib.sha256() if hash_output else None
    folder, name = os.path.split(os.fspath(dest))
    check_segment(name, "an output file name")  # and so the temporary name beside it
    tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.part")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    out = os.open(tmp, flags, 0o666)
    try:
        size = write_parts(out, parts, source, hasher)
        if fsync:
            os.fsync(out)
        os.close(out)
        out = -1
        os.replace(tmp, dest)
    except BaseException:
        if out >= 0:
            os.close(out)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if fsync:
        _fsync_dir(Path(folder))
    return WriteResult(size=size, sha256=None if hasher is None else hasher.hexdigest())


def encoded_parts(
    body: list[bytes],
    pixel: PixelSpan | None,
    sop_class: str,
    sop_instance: str,
    transfer_syntax: str,
) -> list[bytes | SourceSpan]:
    """Return the parts of an output whose header data set is already encoded.

    The same layout as :func:`write_instance` gives: preamble and fresh File Meta
    Information (aligned like the source for large pixel data), `body`, then the pixel
    data element copied from the source, in the source's encoding.

    Raises
    ------
    DeidentificationError
        A UID for the File Meta Information is not a valid UID.
    """
    padding = 0
    size = sum(len(part) for part in body)
    if pixel is not None and pixel.length >= ALIGN_ABOVE:
        meta_size = len(encode_file_meta(sop_class, sop_instance, transfer_syntax))
        padding = alignment_padding(meta_size + size, pixel.offset)
    meta = encode_file_meta(sop_class, sop_instance, transfer_syntax, padding=padding)
    parts: list[bytes | SourceSpan] = [meta, *body]
    if pixel is not None:
        parts.append(SourceSpan(pixel.offset, pixel.length))
    return parts
