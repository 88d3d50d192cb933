"""The Clean Pixel Data Option for one instance: find burned-in text, fill it, write back.

Every frame is examined (text can change between the frames of a cine loop; see
:func:`find_regions` for how a loop is read at the cost of about three frames). The union of
the regions found in any frame is filled, with a margin, in every frame: text found in one
frame is taken to be there in all.
Only the filled pixels change (see :mod:`dicomveil.redaction._frames` for how the pixel data
is written back); an image in which no text is found keeps its pixel data byte for byte.

The policy's pixel settings (:mod:`dicomveil.profile.pixel_regions`) add device region
templates (rectangles filled without OCR; dicomveil ships some for ultrasound devices, see
:mod:`dicomveil.redaction.devices`), the ``regions-only`` mode (no OCR; an image no
template matches is refused) and what to do with a region the recogniser is unsure about
(by default the image is refused, unless that region touches one that is filled anyway).

Anything the cleaner cannot do safely (pixels it cannot decode or encode, kinds it does not
handle, regions it cannot tell text or not) raises
:class:`~dicomveil.errors.UnsupportedInputError` with a value-free reason: the pipeline then
quarantines the file; nothing is ever passed through uncleaned.

References
----------
PS3.15 E.3.1 (Clean Pixel Data Option); PS3.3 C.7.6.1.1.4 (Burned In Annotation), C.7.6.1.1.5
(Lossy Image Compression); PS3.16 CID 7050 (code 113101).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomveil.dicomio import Instance
from dicomveil.engine.report import Report
from dicomveil.errors import UnsupportedInputError
from dicomveil.profile.pixel_regions import PixelMode, PixelSettings, UnsureAction
from dicomveil.redaction._dct import JPEG_BASELINE, fill_baseline_frames
from dicomveil.redaction._frames import (
    LOSSLESS,
    Frames,
    PixelLayout,
    encode_frames,
    fill_native,
    output_syntax,
    pixel_layout,
    stored_word,
)
from dicomveil.redaction._ocr import Box, TextFinder, text_finder
from dicomveil.redaction._view import black, local_contrast, views
from dicomveil.redaction.devices import shipped_regions
from dicomveil.redaction.sensitive import SensitiveText

__all__ = ["CleanResult", "clean_instance", "find_regions", "record_cleaning"]

Array = npt.NDArray[np.generic]

MARGIN: Final = 2
"""Pixels added around each region (the detector's boxes already have a margin), plus an
eighth of the height of its line of text."""
CHANGE_MARGIN: Final = 24
"""Pixels added around the part of a loop that changes before it is read."""
CLEAN_PIXEL_CODE: Final = ("113101", "Clean Pixel Data Option")


@dataclass(frozen=True, slots=True)
class CleanResult:
    """What :func:`clean_instance` did.

    Attributes
    ----------
    instance:
        The instance to write (its transfer syntax may have changed, see ``_frames``).
    regions:
        How many regions were filled (per image, not per frame).
    frames:
        How many frames were examined.
    """

    instance: Instance
    regions: int
    frames: int


def _padded(box: Box, rows: int, columns: int) -> Box:
    line = min(box.bottom - box.top, box.right - box.left)  # vertical text: its width
    return box.padded(MARGIN + line // 8, rows, columns)


def _changed(frame: Array, previous: Array) -> tuple[int, int, int, int] | None:
    """The bounding rectangle ``(top, left, bottom, right)`` of what differs, or ``None``."""
    diff = frame != previous
    if diff.ndim == 3:
        diff = diff.any(axis=2)
    rows = np.flatnonzero(diff.any(axis=1))
    if rows.size == 0:
        return None
    columns = np.flatnonzero(diff.any(axis=0))
    return int(rows[0]), int(columns[0]), int(rows[-1]) + 1, int(columns[-1]) + 1


def _read(
    finder: TextFinder | None,
    frame: Array,
    layout: PixelLayout,
    ds: Dataset,
    area: tuple[int, ...],
    wanted: Callable[[str], bool] | None,
) -> list[Box]:
    if finder is None:
        return []
    top, left, bottom, right = area
    found: list[Box] = []
    images = views(frame, layout, ds)
    parts = [np.ascontiguousarray(view[top:bottom, left:right]) for view in images]
    # the full-range view is read through its local contrast (see the module's docstring);
    # a narrow declared window's view as it is (its text is faint in the full-range view)
    lines = wanted is None  # all-text: a plain line of characters need not be read
    found.extend(finder.find(local_contrast(parts[0]), wanted, lines=lines))
    for part in parts[1:]:
        found.extend(finder.find(part, wanted, lines=lines))
    return [
        Box(b.top + top, b.left + left, b.bottom + top, b.right + left, b.score, b.sure)
        for b in found
    ]


def find_regions(frames: Iterator[Array], layout: PixelLayout, ds: Dataset,
                 finder: TextFinder | None, wanted: Callable[[str], bool] | None = None,
                 ) -> tuple[list[Box], list[list[int]], int]:  # fmt: skip
    """Read every frame; return the padded regions found (unsure ones with ``sure`` false),
    the black value of each frame and the number of frames (``finder`` ``None``: no regions
    are read, the frames are only walked for their black values).

    The first frame is read whole. For the others, what stays the same in every frame is
    what the first frame showed; where frames differ, the brightest and the darkest value
    each pixel takes in any frame are read (text drawn in any frame, bright or dark, is in
    one of those two images: a clock that changes every second shows as superposed digits).
    When the frames differ over more than half of the image (moving anatomy), the first
    frame is not read at all: text brighter than its surroundings in the first frame is at
    least as bright against the darkest image (its surroundings can only be darker there),
    dark text at least as dark against the brightest one, and where nothing changes both
    equal the first frame. A 30-frame loop thus costs two or three frame readings, not
    thirty. ``wanted`` (sensitive mode) chooses the text to fill by what it reads (see
    :meth:`TextFinder.find`).
    """
    rows, columns = layout.rows, layout.columns
    first: Array | None = None
    high: Array | None = None
    low: Array | None = None
    blacks: list[list[int]] = []
    for frame in frames:
        blacks.append(black(frame, layout))
        if first is None:
            first, high, low = frame, np.array(frame, copy=True), np.array(frame, copy=True)
        elif high is not None and low is not None:
            np.maximum(high, frame, out=high)
            np.minimum(low, frame, out=low)
    if first is None or high is None or low is None:
        return [], blacks, 0
    whole = (0, 0, rows, columns)
    area = _changed(high, low) if len(blacks) > 1 else None
    if area is None:
        found = _read(finder, first, layout, ds, whole, wanted)
    else:
        t, left, b, r = area
        m = CHANGE_MARGIN
        area = (max(0, t - m), max(0, left - m), min(rows, b + m), min(columns, r + m))
        if 2 * (area[2] - area[0]) * (area[3] - area[1]) > rows * columns:
            area, found = whole, []
        else:
            found = _read(finder, first, layout, ds, whole, wanted)
        found += _read(finder, high, layout, ds, area, wanted)
        found += _read(finder, low, layout, ds, area, wanted)
    return [_padded(b, rows, columns) for b in found], blacks, len(blacks)


def _touch(a: Box, b: Box) -> bool:
    return a.top <= b.bottom and b.top <= a.bottom and a.left <= b.right and b.left <= a.right


def _decided(found: list[Box], templates: list[Box], unsure: UnsureAction) -> list[Box]:
    """The regions to fill: the text found, the templates' rectangles, and each unsure region
    that touches one of those (or all of them with ``unsure = fill``).

    Raises
    ------
    UnsupportedInputError
        An unsure region stands alone and the policy refuses them (the default).
    """
    sure = [b for b in found if b.sure] + templates
    doubtful = [b for b in found if not b.sure]
    alone = [b for b in doubtful if not any(_touch(b, s) for s in sure)]
    if alone and unsure is UnsureAction.REFUSE:
        raise UnsupportedInputError(
            f"clean-pixel-data: {len(alone)} region(s) could not be told text or not; the "
            'image is refused (policy pixel_unsure = "fill" fills such regions instead)'
        )
    return _merged(sure + doubtful)


def _merged(boxes: list[Box]) -> list[Box]:
    """``boxes`` without those inside another one (filling them changes nothing)."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: (b.top - b.bottom) * (b.right - b.left)):
        if not any(
            k.top <= box.top and k.left <= box.left and k.bottom >= box.bottom
            and k.right >= box.right for k in kept
        ):  # fmt: skip
            kept.append(box)
    return kept


def _filled_frames(frames: Frames, regions: list[Box], blacks: list[list[int]]) -> Iterator[Array]:
    for index, frame in enumerate(frames):
        frame = np.array(frame, copy=True)
        fill = blacks[index]
        for box in regions:
            if frame.ndim == 3:
                frame[box.top : box.bottom, box.left : box.right, :] = fill
            else:
                frame[box.top : box.bottom, box.left : box.right] = fill[0]
        yield frame


def _dct_filled(frames: Frames, regions: list[Box], blacks: list[list[int]]) -> bytes | None:
    """JPEG Baseline pixel data filled in the DCT domain (see ``_dct``), or ``None``."""
    if frames.layout.transfer_syntax != JPEG_BASELINE:
        return None
    filled = fill_baseline_frames(frames, regions, blacks)
    if filled is None:
        return None
    from pydicom.encaps import encapsulate

    return encapsulate(filled, has_bot=True)


def clean_instance(
    instance: Instance, finder: TextFinder | None = None, settings: PixelSettings | None = None
) -> CleanResult:
    """Examine every frame of ``instance`` for burned-in text and fill what is found, and
    the rectangles of the device region templates of ``settings`` that match it.

    ``instance.dataset`` is changed in place: Burned In Annotation becomes ``NO``, and when a
    region was filled it holds the new Pixel Data (and, if the pixel data had to be written
    uncompressed, the returned instance has the new transfer syntax). The Icon Image
    Sequence, a thumbnail that may show the same text, is removed.

    Raises
    ------
    UnsupportedInputError
        The pixels cannot be decoded, encoded or are of a kind the cleaner does not handle;
        a region could not be told text or not; under ``regions-only`` no template matches.
    """
    settings = settings or PixelSettings()
    ds = instance.dataset
    layout = pixel_layout(ds, instance.transfer_syntax)
    every = dataclasses.replace(settings, regions=shipped_regions() + settings.regions)
    templates = [
        Box(*rect, score=1.0) for rect in every.rectangles(ds, layout.rows, layout.columns)
    ]
    ocr = settings.mode is not PixelMode.REGIONS_ONLY
    if not ocr and not templates:
        raise UnsupportedInputError(
            "clean-pixel-data: no [[pixel_regions]] template matches the image "
            "(pixel_mode regions-only)"
        )
    frames = Frames(instance, layout)
    wanted = SensitiveText(ds) if settings.mode is PixelMode.SENSITIVE else None
    found, blacks, count = find_regions(
        iter(frames), layout, frames.dataset, (finder or text_finder()) if ocr else None, wanted
    )
    regions = _decided(found, templates, settings.unsure)
    if "IconImageSequence" in ds:
        del ds.IconImageSequence
    ds.BurnedInAnnotation = "NO"
    if not regions:
        return CleanResult(instance, 0, count)
    syntax = output_syntax(layout)
    if layout.native:
        value = b"".join(
            fill_native(
                frames.native_frame(i), layout, regions, [stored_word(v, layout) for v in fill]
            )
            for i, fill in enumerate(blacks)
        )
    elif (dct := _dct_filled(frames, regions, blacks)) is not None:
        value, syntax = dct, instance.transfer_syntax  # unchanged: no new lossy step
    else:
        value = encode_frames(_filled_frames(frames, regions, blacks), layout, syntax)
        if layout.transfer_syntax not in LOSSLESS:
            ds.LossyImageCompression = "01"
        if layout.photometric == "YBR_FULL_422":
            ds.PhotometricInterpretation = "YBR_FULL"  # decoded: no longer subsampled
        if layout.photometric in ("YBR_RCT", "YBR_ICT"):
            ds.PhotometricInterpretation = "RGB"  # the JPEG 2000 codec undid the transform
        if layout.samples == 3:
            ds.PlanarConfiguration = 0
    vr = "OB" if syntax.is_encapsulated or layout.bits_allocated == 8 else "OW"
    element = DataElement(0x7FE00010, vr, value)
    element.is_undefined_length = syntax.is_encapsulated
    ds[0x7FE00010] = element
    out = instance if syntax == instance.transfer_syntax else dataclasses.replace(
        instance, transfer_syntax=syntax
    )  # fmt: skip
    return CleanResult(out, len(regions), count)


def record_cleaning(ds: Dataset, report: Report, result: CleanResult) -> None:
    """Record the cleaning in the de-identified ``ds`` (code 113101 in the De-identification
    Method Code Sequence, the option in De-identification Method) and in ``report``."""
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator = CLEAN_PIXEL_CODE[0], "DCM"
    item.CodeMeaning = CLEAN_PIXEL_CODE[1]
    codes = list(ds.get("DeidentificationMethodCodeSequence", Sequence()))
    if not any(getattr(c, "CodeValue", "") == CLEAN_PIXEL_CODE[0] for c in codes):
        codes.insert(1 if codes else 0, item)  # after 113100, in code order
        ds.DeidentificationMethodCodeSequence = Sequence(codes)
    method = ds.get("DeidentificationMethod")
    methods = [] if method is None else ([method] if isinstance(method, str) else list(method))
    if "clean-pixel-data" not in methods:
        ds.DeidentificationMethod = [*methods, "clean-pixel-data"]
    report.count("PixelData", "clean-pixel-data")
    for _ in range(result.regions):
        report.count("PixelData", "pixel-region-filled")
