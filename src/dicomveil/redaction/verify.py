"""``verify --pixels``: can an identifying value of the originals still be read in the pixels?

Each output image is read the way the cleaner reads it (the same 8-bit views, each also
through its local contrast, and the same detector, see :mod:`dicomveil.redaction._view` and
:mod:`dicomveil.redaction._ocr`); each region found is read by the recogniser, and the text
is compared with the identifying values ``verify`` already searches in the output bytes.
OCR confuses some characters (``O``/``0``, ``I``/``l``/``1``, ``S``/``5``; a ``^`` is read
as ``*`` or not at all), so both sides are reduced to upper-case letters and digits,
confusable characters are mapped to one, and a value matches when it occurs in the text
read with at most one edit per six characters. Only the attribute keyword is reported, never
the value or the text read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from dicomveil._optional import require
from dicomveil.redaction._ocr import Box, TextFinder, text_finder

__all__ = ["PixelText", "matches", "normalised", "require_ocr", "read_pixels"]

Array = npt.NDArray[np.generic]
UInt8Image = npt.NDArray[np.uint8]

_CONFUSED: Final = str.maketrans({"O": "0", "Q": "0", "D": "0", "I": "1", "L": "1",
                                  "S": "5", "B": "8", "Z": "2"})  # fmt: skip
_NOT_ALNUM: Final = re.compile(r"[^0-9A-Z]+")
MIN_VALUE: Final = 4
"""Values shorter than this (normalised) are not searched: they would match anything."""
CROP_HEIGHT: Final = 48
"""Height a region is scaled to before it is read (the recogniser's input height)."""


def require_ocr() -> None:
    """Raise :class:`~dicomveil.errors.ConfigError` naming the extra when OCR is missing."""
    require("rapidocr", "verify --pixels", "redaction")
    require("cv2", "verify --pixels", "redaction", distribution="opencv-python")


def normalised(text: str) -> str:
    """``text`` upper-cased, reduced to letters and digits, confusable characters merged."""
    return _NOT_ALNUM.sub("", text.upper()).translate(_CONFUSED)


def matches(value: str, text: str) -> bool:
    """Whether normalised ``value`` occurs in normalised ``text``, allowing one edit
    (substitution, insertion, deletion) per six characters (Sellers' algorithm)."""
    if len(value) < MIN_VALUE or not text:
        return False
    if value in text:
        return True
    budget = len(value) // 6
    if budget == 0:
        return False
    previous = list(range(len(value) + 1))  # column for the empty text prefix
    for char in text:
        current = [0]  # a match may start anywhere in the text
        for i, want in enumerate(value, start=1):
            current.append(
                min(previous[i] + 1, current[i - 1] + 1, previous[i - 1] + (want != char))
            )
        if current[-1] <= budget:
            return True
        previous = current
    return False


@dataclass(frozen=True, slots=True)
class PixelText:
    """What was read in one output's pixels (normalised, for matching only; never shown)."""

    text: str
    frames: int


def _crop(view: UInt8Image, box: Box, cv2: object) -> UInt8Image:
    part = view[box.top : box.bottom, box.left : box.right]
    if part.ndim == 2:
        part = np.repeat(part[:, :, None], 3, axis=2)
    height, width = part.shape[:2]
    if height > 1.5 * width:  # vertical text: lay it down
        part = np.rot90(part)
        height, width = width, height
    scale = CROP_HEIGHT / max(1, height)
    size = (max(1, round(width * scale)), CROP_HEIGHT)
    resized: UInt8Image = cv2.resize(  # type: ignore[attr-defined]
        np.ascontiguousarray(part),
        size,
        interpolation=cv2.INTER_CUBIC,  # type: ignore[attr-defined]
    )
    return resized


def _read_views(finder: TextFinder, images: Iterable[UInt8Image]) -> list[str]:
    import cv2

    texts: list[str] = []
    for view in images:
        boxes = [b.padded(3, view.shape[0], view.shape[1]) for b in finder.find(view)]
        if not boxes:
            continue
        crops = [_crop(view, box, cv2) for box in boxes]
        readings = finder.read(crops)
        turned = finder.read([np.ascontiguousarray(np.rot90(c, 2)) for c in crops])
        texts.extend(a[0] for a in readings)
        texts.extend(b[0] for b in turned)
    return texts


def read_pixels(path: Path, finder: TextFinder | None = None) -> PixelText | None:
    """Read the text in the pixels of the output at ``path`` (``None``: no pixel data).

    The first frame is read; for a multi-frame image also the brightest and darkest value
    each pixel takes in any frame (as the cleaner does: text drawn in any frame shows there).

    Raises
    ------
    UnsupportedInputError
        The pixels cannot be decoded (the caller reports the output as not examined).
    """
    from dicomveil.dicomio import read_instance
    from dicomveil.redaction._frames import Frames, pixel_layout
    from dicomveil.redaction._view import local_contrast, views

    instance = read_instance(path)
    if instance.pixel is None:
        return None
    layout = pixel_layout(instance.dataset, instance.transfer_syntax)
    frames = Frames(instance, layout)
    first: Array | None = None
    high: Array | None = None
    low: Array | None = None
    count = 0
    for frame in frames:
        count += 1
        if first is None:
            first, high, low = frame, np.array(frame, copy=True), np.array(frame, copy=True)
        elif high is not None and low is not None:
            np.maximum(high, frame, out=high)
            np.minimum(low, frame, out=low)
    if first is None or high is None or low is None:
        return PixelText("", 0)
    plain = list(views(first, layout, frames.dataset))
    if count > 1:
        plain += views(high, layout, frames.dataset) + views(low, layout, frames.dataset)
    # each view also through its local contrast, the cleaner's reading (text lying across
    # the edge of a brighter area is found there only); the plain one too, for what a
    # viewer shows as it is
    images = [image for view in plain for image in (view, local_contrast(view))]
    texts = _read_views(finder or text_finder(), images)
    return PixelText("|".join(normalised(t) for t in texts), count)
