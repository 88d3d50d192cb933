"""Frames in and out: decode one frame at a time, write the cleaned pixel data back.

Where the pixel data is written back:

- native (uncompressed, deflated included): the stored words are edited in place, so every
  byte outside a filled region is the input's byte;
- RLE Lossless and monochrome JPEG 2000 Lossless: decoded, filled and encoded again in the
  same transfer syntax (both lossless: every other pixel keeps its value);
- other lossless syntaxes (JPEG Lossless, JPEG-LS Lossless, colour JPEG 2000 Lossless), for
  which no encoder is installed: written uncompressed (Explicit VR Little Endian), still
  lossless;
- JPEG Baseline (8-bit, monochrome or YBR_FULL/YBR_FULL_422): filled in the DCT domain and
  kept in JPEG Baseline, every block outside the fill decoding to the same pixels (see
  :mod:`dicomveil.redaction._dct`); when that cannot be done, as the other lossy syntaxes;
- lossy syntaxes (JPEG Extended, JPEG-LS near-lossless, JPEG 2000, HTJ2K): the
  decoded frames are written uncompressed, so no second lossy step is added; Lossy Image
  Compression stays (or becomes) ``01``, as the pixels did go through a lossy compression.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from dicomveil.dicomio import Instance
from dicomveil.errors import UnsupportedInputError
from dicomveil.redaction._ocr import Box

__all__ = [
    "Frames",
    "PixelLayout",
    "encode_frames",
    "fill_native",
    "output_syntax",
    "pixel_layout",
    "stored_word",
]

Array = npt.NDArray[np.generic]

LOSSLESS: Final = frozenset(
    {
        "1.2.840.10008.1.2.4.57",  # JPEG Lossless
        "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
        "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
        "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
        "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
        "1.2.840.10008.1.2.5",  # RLE Lossless
    }
)
"""Encapsulated transfer syntaxes that are lossless."""

MAX_PIXEL_BYTES: Final = 1 << 30
"""Largest pixel data cleaned (1 GiB): larger images are refused rather than risk memory."""

_PHOTOMETRIC: Final = frozenset(
    {"MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR",
     "YBR_RCT", "YBR_ICT"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class PixelLayout:
    """The Image Pixel module values the cleaner needs."""

    rows: int
    columns: int
    samples: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    photometric: str
    planar: int
    frames: int
    transfer_syntax: UID

    @property
    def native(self) -> bool:
        """Whether the pixel data is uncompressed."""
        return not self.transfer_syntax.is_encapsulated

    @property
    def frame_bytes(self) -> int:
        """Bytes of one native frame."""
        return self.rows * self.columns * self.samples * self.bits_allocated // 8


def _int(ds: Dataset, keyword: str, default: int | None = None) -> int:
    value = ds.get(keyword, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UnsupportedInputError(f"clean-pixel-data: {keyword} is missing or invalid") from None


def pixel_layout(ds: Dataset, transfer_syntax: UID) -> PixelLayout:
    """Read the Image Pixel module of ``ds``.

    Raises
    ------
    UnsupportedInputError
        A value is missing, or the pixels are of a kind the cleaner does not handle (bit
        planes of 1 bit, more than 16 bits, unknown colour spaces, huge images).
    """
    layout = PixelLayout(
        rows=_int(ds, "Rows"),
        columns=_int(ds, "Columns"),
        samples=_int(ds, "SamplesPerPixel", 1),
        bits_allocated=_int(ds, "BitsAllocated"),
        bits_stored=_int(ds, "BitsStored", _int(ds, "BitsAllocated")),
        signed=_int(ds, "PixelRepresentation", 0) == 1,
        photometric=str(ds.get("PhotometricInterpretation", "") or "").strip().upper(),
        planar=_int(ds, "PlanarConfiguration", 0),
        frames=max(1, _int(ds, "NumberOfFrames", 1) if ds.get("NumberOfFrames") else 1),
        transfer_syntax=transfer_syntax,
    )
    if layout.bits_allocated not in (8, 16) or layout.samples not in (1, 3):
        raise UnsupportedInputError(
            "clean-pixel-data: only 8- and 16-bit pixels with 1 or 3 samples are cleaned"
        )
    if layout.photometric not in _PHOTOMETRIC or layout.rows < 1 or layout.columns < 1:
        raise UnsupportedInputError("clean-pixel-data: unsupported Photometric Interpretation")
    if layout.native and layout.photometric == "YBR_FULL_422":
        raise UnsupportedInputError("clean-pixel-data: uncompressed YBR_FULL_422 not handled")
    if layout.frames * layout.frame_bytes > MAX_PIXEL_BYTES:
        raise UnsupportedInputError("clean-pixel-data: pixel data too large to clean")
    return layout


def _pixel_value(instance: Instance) -> bytes:
    """The value of the instance's pixel data element, read from its source."""
    span = instance.pixel
    if span is None:  # pragma: no cover - callers check
        raise UnsupportedInputError("clean-pixel-data: no pixel data")
    if span.data is not None:
        return span.data[span.header_length :]
    with open(span.path, "rb") as f:
        f.seek(span.offset + span.header_length)
        value = f.read(span.value_length)
    if len(value) != span.value_length:
        raise UnsupportedInputError("clean-pixel-data: the pixel data is truncated")
    return value


class Frames:
    """The frames of one instance, decoded one at a time."""

    def __init__(self, instance: Instance, layout: PixelLayout) -> None:
        self.layout = layout
        src = Dataset()
        for elem in instance.dataset.group_dataset(0x0028):
            src.add(elem)
        src.file_meta = FileMetaDataset()
        src.file_meta.TransferSyntaxUID = layout.transfer_syntax
        value = _pixel_value(instance)
        if layout.native and len(value) < layout.frames * layout.frame_bytes:
            raise UnsupportedInputError("clean-pixel-data: the pixel data is shorter than declared")
        vr = "OB" if not layout.native or layout.bits_allocated == 8 else "OW"
        src["PixelData"] = DataElement(0x7FE00010, vr, value)
        if not layout.native:
            src["PixelData"].is_undefined_length = True
        self._src = src
        self.value = value

    def decoded(self, index: int) -> Array:
        """Frame ``index`` (from 0) as stored: no colour conversion, no LUT."""
        from pydicom.pixels.utils import pixel_array

        try:
            frame: Array = pixel_array(self._src, index=index, raw=True)
        except Exception as exc:  # noqa: BLE001 - any decoder failure: refuse
            raise UnsupportedInputError(
                f"clean-pixel-data: the pixel data cannot be decoded ({type(exc).__name__})"
            ) from None
        return frame

    def __iter__(self) -> Iterator[Array]:
        for index in range(self.layout.frames):
            yield self.decoded(index)

    def encoded(self) -> Iterator[bytes]:
        """The encoded frames of encapsulated pixel data, one at a time."""
        from pydicom.encaps import generate_frames

        yield from generate_frames(self.value, number_of_frames=self.layout.frames)

    def decode_other(self, frame: bytes) -> Array:
        """Decode another encoded frame as this instance's frames are decoded."""
        from pydicom.encaps import encapsulate
        from pydicom.pixels.utils import pixel_array

        other = Dataset()
        for elem in self._src:
            if elem.tag != 0x7FE00010:
                other.add(elem)
        other.file_meta = self._src.file_meta
        other.NumberOfFrames = 1
        other["PixelData"] = DataElement(0x7FE00010, "OB", encapsulate([frame]))
        other["PixelData"].is_undefined_length = True
        result: Array = pixel_array(other, raw=True)
        return result

    def native_frame(self, index: int) -> bytes:
        """The stored bytes of native frame ``index``."""
        size = self.layout.frame_bytes
        return self.value[index * size : (index + 1) * size]

    @property
    def dataset(self) -> Dataset:
        """The decoding dataset (group 0028 of the instance, with its pixel data)."""
        return self._src


def output_syntax(layout: PixelLayout) -> UID:
    """The transfer syntax the cleaned pixel data is written in."""
    uid = layout.transfer_syntax
    if layout.native:
        return uid
    if uid == RLELossless:
        return uid
    if uid == JPEG2000Lossless and layout.samples == 1:
        return uid
    return ExplicitVRLittleEndian


def encode_frames(frames: Iterable[Array], layout: PixelLayout, syntax: UID) -> bytes:
    """Encode decoded frames in ``syntax`` (RLE Lossless, JPEG 2000 Lossless) and
    encapsulate them, or lay them out natively (little endian)."""
    if not syntax.is_encapsulated:
        dtype = np.dtype(f"{'i' if layout.signed else 'u'}{layout.bits_allocated // 8}")
        dtype = dtype.newbyteorder(">" if syntax == ExplicitVRBigEndian else "<")
        return b"".join(np.ascontiguousarray(f, dtype=dtype).tobytes() for f in frames)
    from pydicom.encaps import encapsulate
    from pydicom.pixels.encoders.base import get_encoder

    encoder = get_encoder(syntax)
    photometric = layout.photometric if layout.samples == 1 else "RGB"
    if layout.photometric == "YBR_FULL" and syntax == RLELossless:
        photometric = "YBR_FULL"
    options: dict[str, Any] = {
        "rows": layout.rows,
        "columns": layout.columns,
        "samples_per_pixel": layout.samples,
        "bits_allocated": layout.bits_allocated,
        "bits_stored": layout.bits_stored,
        "pixel_representation": int(layout.signed),
        "photometric_interpretation": photometric,
        "number_of_frames": 1,
        "planar_configuration": 0,
    }
    try:
        encoded = [encoder.encode(f, **options) for f in frames]
    except Exception as exc:  # noqa: BLE001 - any encoder failure: refuse
        raise UnsupportedInputError(
            f"clean-pixel-data: the cleaned pixels cannot be encoded ({type(exc).__name__})"
        ) from None
    return encapsulate(encoded, has_bot=True)


def fill_native(data: bytes, layout: PixelLayout, boxes: list[Box], words: list[int]) -> bytes:
    """Native frame bytes with every box set to the stored ``words`` (one per sample); all
    other bytes are those of ``data``."""
    big = layout.transfer_syntax == ExplicitVRBigEndian
    dtype = np.dtype(f"u{layout.bits_allocated // 8}").newbyteorder(">" if big else "<")
    flat = np.frombuffer(bytearray(data), dtype=dtype)
    r, c, s = layout.rows, layout.columns, layout.samples
    if s == 3 and layout.planar == 1:
        pixels = flat.reshape(s, r, c).transpose(1, 2, 0)
    else:
        pixels = flat.reshape(r, c, s)
    fill = np.array(words, dtype=dtype)
    for box in boxes:
        pixels[box.top : box.bottom, box.left : box.right, :] = fill
    return flat.tobytes()


def stored_word(value: int, layout: PixelLayout) -> int:
    """``value`` as a stored word (two's complement for signed pixels)."""
    return int(value) & ((1 << layout.bits_allocated) - 1)
