"""Finding text in an 8-bit image: an ONNX text detector, each box confirmed by a recogniser.

The detector (PP-OCR's DB network, run by RapidOCR on onnxruntime; its models ship in the
wheel, nothing is downloaded) finds text-like regions; on its own it also marks smooth anatomy
and speckle. Every region is therefore cropped and read by the recogniser, and only regions
that read as text are kept (a tall region is read turned both ways, for vertical text);
regions whose reading is neither clearly text nor clearly not are returned marked unsure, for
the caller to decide (the cleaner refuses the image rather than pass one of them). Small
images are enlarged first (small text on a small ultrasound frame is 6-8 pixels high) and
large ones are read in overlapping tiles at their own resolution (a CR's 9-pixel annotation
would vanish if the image were scaled down), so the detector's memory stays bounded.

The model is loaded once per process, on first use (about 1 s, about 150 MB).
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from dicomveil._optional import require

__all__ = ["Box", "TextFinder", "is_line", "text_finder", "verdict"]

UInt8Image = npt.NDArray[np.uint8]

TILE: Final = 640
"""Side of the square tiles a large image is read in (pixels of the scaled image)."""
OVERLAP: Final = 96
"""Overlap of neighbouring tiles: a text line up to this high lies whole in one of them."""
TARGET_SIDE: Final = 736
"""Images whose longer side is shorter are enlarged to about this (at most MAX_SCALE)."""
MAX_SCALE: Final = 3.0
MIN_SCORE: Final = 0.5
"""Recogniser confidence from which a region with two or more characters is text."""
MIN_SCORE_SINGLE: Final = 0.8
"""Confidence needed when only one character is read (anatomy is sometimes read as 'l')."""
MAX_SINGLE_HEIGHT: Final = 80
"""A one-character region taller than this (original pixels) is not taken for text."""
REC_MIN_WIDTH: Final = 48
"""Narrowest input of the recogniser (its inputs are 48 px high; a batch is as wide as its
widest crop). RapidOCR pads every batch to at least 320 px, which made the recogniser
read mostly padding for short words and cost about a third more."""
UNSURE_SCORE: Final = 0.3
"""From this confidence up to MIN_SCORE a region with two or more characters is unsure."""
UNSURE_SCORE_SINGLE: Final = 0.6
"""From this confidence up to MIN_SCORE_SINGLE a one-character region is unsure."""
LINE_SCORE: Final = 0.6
"""Detector score (mean text probability inside the region) from which a line-shaped region
may be taken for text without being read (see :func:`is_line`)."""
LINE_RATIO: Final = 2.5
"""A line-shaped region is at least this many times as long as it is high."""
LINE_MAX_HEIGHT: Final = 64
"""... and at most this high (original pixels)."""
LINE_MIN_GLYPHS: Final = 4
"""... and its ink is at least this many separate glyphs (see :func:`is_line`)."""
LINE_MIN_CONTRAST: Final = 32
"""... with at least this contrast (8-bit levels); a fainter region is read."""


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned region of the original image, in pixels: ``[top, bottom)``, ``[left,
    right)``; ``score`` is the recogniser's confidence (the text read is never kept);
    ``sure`` is false when the reading was neither clearly text nor clearly not."""

    top: int
    left: int
    bottom: int
    right: int
    score: float
    sure: bool = True

    def padded(self, margin: int, rows: int, columns: int) -> Box:
        """This box grown by ``margin`` pixels on each side, clipped to the image."""
        return Box(
            max(0, self.top - margin),
            max(0, self.left - margin),
            min(rows, self.bottom + margin),
            min(columns, self.right + margin),
            self.score,
            self.sure,
        )


def verdict(text: str, score: float, height: float) -> bool | None:
    """What the recogniser's reading of a region says: text (``True``), not text
    (``False``), or unsure (``None``)."""
    chars = sum(1 for c in text if not c.isspace())
    if chars >= 2:
        return True if score >= MIN_SCORE else (None if score >= UNSURE_SCORE else False)
    if chars != 1 or height > MAX_SINGLE_HEIGHT:
        return False
    return True if score >= MIN_SCORE_SINGLE else (None if score >= UNSURE_SCORE_SINGLE else False)


class TextFinder:
    """The detector and recogniser of one process (use :func:`text_finder`)."""

    def __init__(self, threads: int = 1, det_model: Path | None = None) -> None:
        """``det_model``: another ONNX text detector instead of the one RapidOCR ships, for
        measurements (``benchmarks/pixel_bench.py --det-model``). It must be a PP-OCR DB
        network (3-channel input in [-1, 1], one probability map out), as RapidOCR's
        post-processing reads its output; none but the shipped one is used by default."""
        rapidocr = require("rapidocr", "clean-pixel-data", "redaction")
        self._crop = require("rapidocr.utils.process_img", "clean-pixel-data", "redaction")
        self._cv2 = require("cv2", "clean-pixel-data", "redaction", distribution="opencv-python")
        params: dict[str, Any] = {
            "Global.log_level": "error",
            "Global.use_cls": False,
            "Det.limit_type": "max",
            "Det.limit_side_len": TILE + OVERLAP,
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            "Rec.rec_img_shape": [3, 48, REC_MIN_WIDTH],
            "Rec.rec_batch_num": 1,
        }
        if det_model is not None:
            params["Det.model_path"] = str(det_model)
        engine = rapidocr.RapidOCR(params=params)
        self._detector = engine._load_det_model()  # noqa: SLF001 - the stages, not the pipeline
        self._recogniser = engine._load_rec_model()  # noqa: SLF001
        self._rec_input = require("rapidocr.ch_ppocr_rec", "clean-pixel-data", "redaction")
        self._lock = threading.Lock()

    def find(
        self,
        image: UInt8Image,
        wanted: Callable[[str], bool] | None = None,
        side: int = TARGET_SIDE,
        lines: bool = False,
    ) -> list[Box]:
        """Return the text regions of ``image`` (2-D gray or ``(rows, columns, 3)`` RGB),
        and the unsure ones (``sure`` false). An image whose longer side is shorter than
        ``side`` is enlarged to about that (at most MAX_SCALE).

        With ``wanted``, a region read as text is kept only when ``wanted`` says yes to
        its text, and an unsure one it says yes to counts as text (``sensitive`` mode).
        With ``lines`` (and no ``wanted``), a region that :func:`is_line` takes for a line
        of characters is text without being read (its ``score`` is then the detector's)."""
        rows, columns = image.shape[:2]
        scale = min(MAX_SCALE, max(1.0, side / max(rows, columns)))
        rgb = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
        if scale > 1.0:
            size = (round(columns * scale), round(rows * scale))
            rgb = self._cv2.resize(rgb, size, interpolation=self._cv2.INTER_CUBIC)
        boxes: list[Box] = []
        with self._lock:  # onnxruntime sessions are thread-safe, the pre-processing is not
            for top, left, tile in _tiles(rgb):
                boxes.extend(self._read(tile, (top, left, scale), (rows, columns), wanted, lines))
            _give_back()
        return boxes

    def _read(
        self,
        tile: UInt8Image,
        place: tuple[int, int, float],
        size: tuple[int, int],
        wanted: Callable[[str], bool] | None,
        lines: bool,
    ) -> list[Box]:
        top, left, scale = place
        rows, columns = size
        found = self._detect(tile)
        if not found:
            return []
        quads = [np.asarray(q, dtype=np.float32) for q, _ in found]
        crops = [self._crop.get_rotate_crop_image(tile, quad.copy()) for quad in quads]
        scores = [score for _, score in found]
        plain = [lines and is_line(c, s, scale) for c, s in zip(crops, scores, strict=True)]
        readings = [("", score) for score in scores]  # a plain line keeps the detector's score
        unread = [i for i, skip in enumerate(plain) if not skip]
        for i, reading in zip(unread, self.read([crops[i] for i in unread]), strict=True):
            readings[i] = reading
        tall = [i for i in unread if _was_turned(crops[i], quads[i])]
        if tall:  # read turned the other way too: vertical text runs either way
            again = self.read([np.rot90(crops[i], 2) for i in tall])
            for i, reading in zip(tall, again, strict=True):
                if reading[1] > readings[i][1]:
                    readings[i] = reading
        boxes = []
        for quad, skip, (text, score) in zip(quads, plain, readings, strict=True):
            ys = (quad[:, 1] + top) / scale
            xs = (quad[:, 0] + left) / scale
            said = True if skip else verdict(text, score, float(ys.max() - ys.min()))
            if said is False:
                continue
            if wanted is not None:
                if wanted(text):
                    said = True
                elif said:
                    continue  # text, but none that identifies
            boxes.append(
                Box(
                    max(0, int(np.floor(ys.min()))),
                    max(0, int(np.floor(xs.min()))),
                    min(rows, int(np.ceil(ys.max())) + 1),
                    min(columns, int(np.ceil(xs.max())) + 1),
                    float(score),
                    said is True,
                )
            )
        return boxes

    def _detect(self, tile: UInt8Image) -> list[tuple[npt.NDArray[np.float32], float]]:
        """The detector's quadrilaterals in ``tile`` (at most TILE + OVERLAP a side), each
        with its score (the mean text probability inside it).

        RapidOCR's own pre-processing is done here in single precision (its normalisation
        works in double precision and cost a tenth of the detector's time): the tile is
        resized to multiples of 32, as the network needs, and mapped to [-1, 1] (mean and
        deviation 0.5)."""
        rows, columns = tile.shape[:2]
        size = (max(32, round(columns / 32) * 32), max(32, round(rows / 32) * 32))
        if size != (columns, rows):
            tile = self._cv2.resize(tile, size)
        blob = tile.astype(np.float32)
        blob *= np.float32(2 / 255)
        blob -= np.float32(1)
        batch = np.ascontiguousarray(blob.transpose(2, 0, 1)[None])
        predictions = self._detector.session(batch)
        boxes, scores = self._detector.postprocess_op(predictions, (rows, columns))
        return [(box, float(score)) for box, score in zip(boxes, scores, strict=True)]

    def read(self, crops: list[UInt8Image]) -> list[tuple[str, float]]:
        """The recogniser's reading of each crop (RGB, any size): ``(text, confidence)``.
        The text is for matching only: callers never keep, log or report it."""
        if not crops:
            return []
        result = self._recogniser(self._rec_input.TextRecInput(img=crops))
        texts = result.txts or ("",) * len(crops)
        scores = result.scores or (0.0,) * len(crops)
        return [(str(t), float(s)) for t, s in zip(texts, scores, strict=True)]


def is_line(crop: UInt8Image, score: float, scale: float) -> bool:
    """Whether a detected region is plainly a line of characters, so that reading it (the
    recogniser: about a third of the time) could not change the verdict. ``crop`` is the
    region as the recogniser gets it (turned when the text runs vertically), ``score`` the
    detector's, ``scale`` the enlargement of the image read.

    All of: the detector is confident (LINE_SCORE); the region is long and low (LINE_RATIO,
    at most LINE_MAX_HEIGHT original pixels high); its ink (what differs from the crop's
    median by more than a third of the largest difference, bright or dark) is LINE_MIN_GLYPHS or
    more separate glyphs, each at least a third of the region's height, all crossing one
    common row, with next to no other ink. A needle, a catheter or an edge is one
    glyph; speckle and texture are many small specks (and text on them is read); a faint
    region is read too."""
    rows, columns = crop.shape[:2]
    if score < LINE_SCORE or columns < LINE_RATIO * rows or rows > LINE_MAX_HEIGHT * scale:
        return False
    gray = crop.astype(np.float32).mean(axis=2) if crop.ndim == 3 else crop.astype(np.float32)
    away = np.abs(gray - np.median(gray))
    peak = float(away.max())
    if peak < LINE_MIN_CONTRAST:
        return False
    ink = (away > peak / 3).astype(np.uint8)
    cv2 = require("cv2", "clean-pixel-data", "redaction", distribution="opencv-python")
    count, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    tops, heights, areas = stats[1:, 1], stats[1:, 3], stats[1:, 4]
    glyph = heights >= rows / 3
    if int(glyph.sum()) < LINE_MIN_GLYPHS or areas[~glyph].sum() > areas[glyph].sum() / 2:
        return False
    return bool((tops[glyph]).max() < (tops[glyph] + heights[glyph]).min())


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or ``None`` on other C libraries."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_TRIM: Final = _malloc_trim()


def _give_back() -> None:
    """Return the freed memory of the networks' work to the system. Without a memory arena
    onnxruntime frees its buffers after each run, but glibc keeps the freed pages, and the
    next images' buffers fragment them: the process grew by about 100 MB over 20 images and
    its peak by 50 MB more (measured on the benchmark corpus). Costs well under 1 ms."""
    if _TRIM is not None:
        _TRIM(0)


def _was_turned(crop: UInt8Image, quad: npt.NDArray[np.float32]) -> bool:
    """Whether the cropper turned a tall region on its side (it turns one way only)."""
    height = max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2]))
    width = max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3]))
    return bool(width > 0 and height / width >= 1.5)


def _spans(size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the tiles along one axis of ``size`` pixels."""
    if size <= TILE + OVERLAP:
        return [(0, size)]
    last = size - TILE
    return [(start, start + TILE) for start in [*range(0, last, TILE - OVERLAP), last]]


def _tiles(image: UInt8Image) -> list[tuple[int, int, UInt8Image]]:
    """``(top, left, tile)`` covering ``image``; one tile when it is small enough."""
    rows, columns = image.shape[:2]
    return [
        (top, left, image[top:bottom, left:right])
        for top, bottom in _spans(rows)
        for left, right in _spans(columns)
    ]


_FINDERS: list[TextFinder] = []
_FINDER_LOCK = threading.Lock()


def text_finder() -> TextFinder:
    """The process's :class:`TextFinder`, loaded on first use."""
    with _FINDER_LOCK:
        if not _FINDERS:
            _FINDERS.append(TextFinder())
        return _FINDERS[0]
