"""Pixel data for WADO-RS: frames as stored or decoded, and rendered PNG/JPEG images.

Frames of an uncompressed instance are byte ranges of its Pixel Data; frames of an
encapsulated (compressed) instance are its fragments, one frame each, in their own media
type (``image/jpeg``, ``image/jp2``, ...), or decoded to raw bytes when only
``application/octet-stream`` is accepted. Frames are read from the archived file one at a
time, at their offsets (never the whole Pixel Data), each requested frame once.

Rendering refuses images above the ``max_render_pixels`` setting before decoding anything
(their size is read from the header), decodes the one frame it needs, and computes in
32-bit floats (a 12000×12000 image cost 3.2 GB per request in 64-bit floats). Rendering
decodes one frame (pylibjpeg for compressed data), applies the Modality LUT, then the window
(from the request, else the instance's first Window Center/Width, else the frame's range),
inverts MONOCHROME1, scales to 8 bits, fits the viewport and encodes PNG or JPEG.

References
----------
PS3.18 §8.7.3 (frame media types), §8.3.5 (rendered: window, viewport, quality);
PS3.3 §C.11.2.1.2 (linear window function).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pydicom.dataset import Dataset

from dicomveil.errors import UnsupportedInputError
from dicomveil.web.errors import BadRequest, HttpError, NotFound


class ImageTooLarge(HttpError):
    """The image is larger than the server renders (413, ``max_render_pixels``)."""

    status = 413


__all__ = [
    "FRAME_MEDIA_TYPES",
    "RenderOptions",
    "ImageTooLarge",
    "file_frames",
    "frame_media_type",
    "frames",
    "linear_window",
    "parse_frame_numbers",
    "parse_render_options",
    "raw_frame_syntax",
    "render",
]

FRAME_MEDIA_TYPES: Final[dict[str, str]] = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}
"""Transfer syntax of encapsulated pixel data → media type of its frames (PS3.18 Table 8.7.3-2)."""

OCTET: Final = "application/octet-stream"
_MAX_FRAMES: Final = 10_000


def frame_media_type(transfer_syntax: str) -> str:
    """Media type of the stored frames (``application/octet-stream`` when uncompressed)."""
    return FRAME_MEDIA_TYPES.get(transfer_syntax, OCTET)


EXPLICIT_LITTLE: Final = "1.2.840.10008.1.2.1"
_BIG_ENDIAN: Final = "1.2.840.10008.1.2.2"


def raw_frame_syntax(transfer_syntax: str) -> str:
    """Transfer syntax of the raw (``application/octet-stream``) frames of an instance
    stored in ``transfer_syntax``: Explicit VR Little Endian (frames of implicit, deflated
    and decoded compressed instances are little endian bytes), or Big Endian as stored."""
    return _BIG_ENDIAN if transfer_syntax == _BIG_ENDIAN else EXPLICIT_LITTLE


def parse_frame_numbers(text: str, available: int) -> list[int]:
    """Parse ``1,3,5`` (1-based frame numbers): each frame once, at most ``available``.

    Raises
    ------
    BadRequest
        Malformed list.
    NotFound
        A frame beyond the instance's frames.
    """
    if len(text) > 16 * _MAX_FRAMES:
        raise BadRequest("the frame list is too long")
    try:
        numbers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BadRequest("frame numbers must be a comma-separated list of integers") from None
    if not numbers or min(numbers) < 1:
        raise BadRequest("frame numbers start at 1")
    if max(numbers) > available:
        raise NotFound(f"the instance has {available} frame(s)")
    unique = list(dict.fromkeys(numbers))  # each frame once, in the order first asked
    if len(unique) > _MAX_FRAMES:
        raise BadRequest(f"at most {_MAX_FRAMES} frames per request")
    return unique


def frame_count(ds: Dataset) -> int:
    """Number of frames of an image (1 when Number of Frames is absent)."""
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def frames(ds: Dataset, numbers: list[int], *, decode: bool) -> list[bytes]:
    """Return the requested frames (1-based) as stored, or decoded when ``decode``.

    Raises
    ------
    NotFound
        The instance has no pixel data.
    UnsupportedInputError
        The pixel data cannot be decoded (no decoder for its transfer syntax).
    """
    if "PixelData" not in ds:
        raise NotFound("the instance has no pixel data")
    syntax = str(ds.file_meta.TransferSyntaxUID)
    count = frame_count(ds)
    if decode:
        return [_decoded(ds, n - 1).tobytes() for n in numbers]
    if syntax in FRAME_MEDIA_TYPES or ds["PixelData"].is_undefined_length:
        from pydicom.encaps import generate_frames

        stored = list(generate_frames(ds.PixelData, number_of_frames=count))
        return [stored[n - 1] for n in numbers]
    data: bytes = ds.PixelData
    length = _frame_length(ds)
    return [data[(n - 1) * length : n * length] for n in numbers]


_DEFLATED: Final = "1.2.840.10008.1.2.1.99"


def _header(path: Path) -> Dataset:
    """The dataset of ``path`` with large values (Pixel Data) left in the file."""
    from pydicom import dcmread

    return dcmread(path, defer_size=4096)


def file_frames(path: Path, numbers: list[int], *, decode: bool) -> Iterator[bytes]:
    """Yield the requested frames (1-based) of the file ``path``, one at a time, as stored
    or decoded when ``decode``.

    Raises
    ------
    NotFound
        The instance has no pixel data.
    UnsupportedInputError
        The pixel data cannot be decoded (no decoder for its transfer syntax).
    """
    ds = _header(path)
    if "PixelData" not in ds:
        raise NotFound("the instance has no pixel data")
    syntax = str(ds.file_meta.TransferSyntaxUID)
    if syntax == _DEFLATED:  # offsets are in the inflated stream: read it all
        from pydicom import dcmread

        yield from frames(dcmread(path), numbers, decode=decode)
        return
    if decode:
        for number in numbers:
            yield _decoded(path, number - 1).tobytes()
        return
    raw: Any = ds.get_item("PixelData", keep_deferred=True)
    offset = int(getattr(raw, "value_tell", 0))
    count = frame_count(ds)
    with open(path, "rb") as handle:
        if syntax in FRAME_MEDIA_TYPES or raw.length == 0xFFFFFFFF:
            from pydicom.encaps import get_frame

            for number in numbers:
                handle.seek(offset)
                yield get_frame(handle, number - 1, number_of_frames=count)
            return
        length = _frame_length(ds)
        for number in numbers:
            yield os.pread(handle.fileno(), length, offset + (number - 1) * length)


def _frame_length(ds: Dataset) -> int:
    bits = int(ds.BitsAllocated) * int(ds.get("SamplesPerPixel", 1))
    return (int(ds.Rows) * int(ds.Columns) * bits + 7) // 8


def _decoded(source: Dataset | Path, index: int) -> Any:
    from pydicom.pixels.utils import pixel_array

    try:
        return pixel_array(source, index=index)
    except (NotImplementedError, RuntimeError, ValueError, AttributeError, KeyError) as exc:
        raise UnsupportedInputError(
            f"the pixel data cannot be decoded ({type(exc).__name__})"
        ) from None


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """What a ``/rendered`` or ``/thumbnail`` request asks for."""

    media_type: str = "image/jpeg"
    window: tuple[float, float] | None = None
    viewport: tuple[int, int] | None = None
    quality: int = 90


def parse_render_options(
    media_type: str, window: str | None, viewport: str | None, quality: int | None
) -> RenderOptions:
    """Parse ``window=center,width[,function]``, ``viewport=w,h[,...]`` and ``quality``.

    Raises
    ------
    BadRequest
        Malformed values, or a window function other than linear.
    """
    chosen_window = None
    if window:
        parts = [p.strip() for p in window.split(",")]
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("linear", "")):
            raise BadRequest("window is center,width[,linear]")
        try:
            center, width = float(parts[0]), float(parts[1])
        except ValueError:
            raise BadRequest("window center and width must be numbers") from None
        if width < 1:
            raise BadRequest("window width must be at least 1")
        chosen_window = (center, width)
    chosen_viewport = None
    if viewport:
        try:
            w, h = (int(v) for v in viewport.split(",")[:2])
        except ValueError:
            raise BadRequest("viewport is width,height") from None
        if not (0 < w <= 4096 and 0 < h <= 4096):
            raise BadRequest("viewport width and height must be 1..4096")
        chosen_viewport = (w, h)
    if quality is not None and not 1 <= quality <= 100:
        raise BadRequest("quality must be 1..100")
    return RenderOptions(media_type, chosen_window, chosen_viewport, quality or 90)


def _first_number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def linear_window(values: Any, center: float, width: float) -> Any:
    """Apply the linear VOI window (PS3.3 §C.11.2.1.2.1) and return 8-bit values."""
    import numpy as np

    if width <= 1:
        return np.where(values < center - 0.5, 0, 255).astype(np.uint8)
    scaled = np.asarray(values, dtype=np.float32) - np.float32(center - 0.5)
    scaled *= np.float32(255.0 / (width - 1))
    scaled += np.float32(127.5)
    return np.clip(scaled, 0, 255, out=scaled).astype(np.uint8)


def _modality(array: Any, ds: Dataset, lut: Any) -> Any:
    """The Modality LUT in 32-bit floats: slope and intercept in place (a LUT sequence
    through pydicom)."""
    import numpy as np

    if "ModalityLUTSequence" in ds:
        return lut(array, ds).astype(np.float32)
    values = array.astype(np.float32)
    slope = _first_number(ds.get("RescaleSlope"))
    intercept = _first_number(ds.get("RescaleIntercept"))
    if slope is not None and slope != 1:
        values *= np.float32(slope)
    if intercept:
        values += np.float32(intercept)
    return values


def _to_8bit(ds: Dataset, array: Any, window: tuple[float, float] | None) -> Any:
    import numpy as np
    from pydicom.pixels.processing import apply_modality_lut

    if int(ds.get("SamplesPerPixel", 1)) > 1:
        if window is not None:
            return linear_window(array.astype(np.float32), *window)
        if array.dtype == np.uint8:
            return array
        top = float(2 ** int(ds.get("BitsStored", 8)) - 1)
        scaled = array.astype(np.float32)
        scaled *= np.float32(255.0 / top)
        return np.clip(scaled, 0, 255, out=scaled).astype(np.uint8)
    values = _modality(array, ds, apply_modality_lut)
    if window is None:
        center = _first_number(ds.get("WindowCenter"))
        width = _first_number(ds.get("WindowWidth"))
        if center is not None and width is not None and width >= 1:
            window = (center, width)
        else:
            low, high = float(values.min()), float(values.max())
            window = ((low + high) / 2, max(high - low, 1.0))
    image = linear_window(values, *window)
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        image = 255 - image
    return image


def render(path: Path, frame: int, options: RenderOptions, max_pixels: int) -> bytes:
    """Render frame ``frame`` (1-based) of the file ``path`` as PNG or JPEG bytes.

    Raises
    ------
    NotFound
        No pixel data, or no such frame.
    ImageTooLarge
        The frame has more than ``max_pixels`` pixels (refused before decoding).
    UnsupportedInputError
        The pixel data cannot be decoded.
    """
    from PIL import Image

    ds = _header(path)
    if "PixelData" not in ds:
        raise NotFound("the instance has no pixel data")
    if frame > frame_count(ds):
        raise NotFound(f"the instance has {frame_count(ds)} frame(s)")
    try:
        pixels = int(ds.Rows) * int(ds.Columns)
    except (AttributeError, TypeError, ValueError):
        raise UnsupportedInputError("the instance has no valid Rows and Columns") from None
    if pixels > max_pixels:
        raise ImageTooLarge(f"the image exceeds the rendering limit of {max_pixels} pixels")
    source: Dataset | Path = path
    if str(ds.file_meta.get("TransferSyntaxUID", "")) == _DEFLATED:
        from pydicom import dcmread

        source = dcmread(path)
    image = Image.fromarray(_to_8bit(ds, _decoded(source, frame - 1), options.window))
    if options.viewport is not None:
        image.thumbnail(options.viewport)
    out = io.BytesIO()
    if options.media_type == "image/png":
        image.save(out, format="PNG")
    else:
        image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode).save(
            out, format="JPEG", quality=options.quality
        )
    return out.getvalue()
