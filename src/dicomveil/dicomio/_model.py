"""Value objects shared by the reader and the writer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydicom.dataset import Dataset, FileDataset
from pydicom.uid import UID

__all__ = [
    "DEFAULT_DEFER_SIZE",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFLATED_TRANSFER_SYNTAXES",
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "PIXEL_DATA_TAGS",
    "Instance",
    "PixelSpan",
    "WriteResult",
]

IMPLEMENTATION_CLASS_UID: Final = UID("2.25.13933924526500438602576756396702768358")
"""(0002,0012) Implementation Class UID written into every output (a UUID-derived 2.25 UID)."""

IMPLEMENTATION_VERSION_NAME: Final = "DICOMVEIL_010"
"""(0002,0013) Implementation Version Name written into every output."""

PIXEL_DATA_TAGS: Final = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
"""Float Pixel Data, Double Float Pixel Data and Pixel Data: the bulk elements passed through."""

DEFLATED_TRANSFER_SYNTAXES: Final = frozenset(
    {
        "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
        "1.2.840.10008.1.2.4.95",  # JPIP Referenced Deflate
        "1.2.840.10008.1.2.4.205",  # JPIP HTJ2K Referenced Deflate
    }
)
"""Transfer syntaxes whose whole data set is deflated after the File Meta Information."""

DEFAULT_DEFER_SIZE: Final = 4 * 1024 * 1024
"""Top-level values longer than this are not read into memory (the writer copies them as bytes)."""

DEFAULT_MAX_HEADER_BYTES: Final = 128 * 1024 * 1024
"""Largest amount of element values (or inflated data) one instance may hold in memory."""


@dataclass(frozen=True, slots=True)
class PixelSpan:
    """Where the top-level pixel data element of an instance lies, as encoded.

    The span covers the whole element: tag, VR and length fields included, and for
    encapsulated (undefined length) pixel data every item and the sequence delimiter.

    Attributes
    ----------
    path
        The source file.
    offset
        Byte offset of the element's tag in the source file, or in the inflated data
        set stream when the instance is deflated (see `data`).
    length
        Number of bytes of the encoded element.
    tag
        (7FE0,0010) Pixel Data, (7FE0,0008) Float Pixel Data or (7FE0,0009) Double
        Float Pixel Data, as an int.
    vr
        The VR as encoded (``None`` for implicit VR).
    header_length
        Length of the tag/VR/length header (8 or 12 bytes).
    encapsulated
        ``True`` when the value has undefined length (a sequence of fragment items).
    data
        The encoded element's bytes when they are not in the source file as such
        (deflated instances only); ``None`` otherwise.
    """

    path: Path
    offset: int
    length: int
    tag: int
    vr: str | None
    header_length: int
    encapsulated: bool
    data: bytes | None = None

    @property
    def value_length(self) -> int:
        """Number of bytes of the element's value field (items included when encapsulated)."""
        return self.length - self.header_length


@dataclass(frozen=True, slots=True)
class Instance:
    """One DICOM instance as read by :func:`~dicomveil.dicomio.read_instance`.

    Attributes
    ----------
    path
        The source file.
    dataset
        File meta (``dataset.file_meta``, as read) and every top-level element that
        precedes the pixel data. Values longer than the defer size are not loaded:
        pydicom reads them from `path` when they are accessed, and the writer copies
        them as bytes when they are not.
    trailing
        Top-level elements that follow the pixel data (Digital Signatures, trailing
        padding, private groups above 7FE0), parsed like `dataset`.
    pixel
        The raw pixel data element, or ``None`` when the instance has none.
    transfer_syntax
        The transfer syntax of the output: as declared, or detected for files without
        File Meta Information, or corrected when a native syntax contradicts the data set.
    is_implicit_vr, is_little_endian
        How the data set is encoded in the source. This differs from `transfer_syntax`
        only for the few files whose data set contradicts a compressed syntax (implicit VR
        under JPEG); the writer then re-encodes the header to match the syntax.
    is_deflated
        The data set is deflated after the File Meta Information; the writer re-deflates.
    has_preamble
        The file starts with a 128-byte preamble and ``DICM`` (the writer always writes
        a zeroed preamble, never the original one).
    has_file_meta
        The file has a File Meta Information group (0002,eeee).
    file_size
        Size of the source file in bytes.
    padding
        Number of zero bytes after the last element that were ignored.
    """

    path: Path
    dataset: FileDataset
    trailing: Dataset
    pixel: PixelSpan | None
    transfer_syntax: UID
    is_implicit_vr: bool
    is_little_endian: bool
    is_deflated: bool
    has_preamble: bool
    has_file_meta: bool
    file_size: int
    padding: int = 0


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What :func:`~dicomveil.dicomio.write_instance` wrote.

    Attributes
    ----------
    size
        Number of bytes of the output file.
    sha256
        Hex SHA-256 of the output file, or ``None`` when hashing was not asked for.
    """

    size: int
    sha256: str | None
