"""Filling regions of JPEG Baseline frames in the DCT domain: no second lossy step.

A JPEG Baseline frame is a grid of 8x8 blocks of quantised DCT coefficients per component.
Each block that a region touches (in every component, at its own sampling) gets a flat black
block: its AC coefficients zero, its DC coefficient the quantised value of black; every other
block keeps its coefficients exactly, so the entropy-coded data is re-encoded (by libjpeg,
through the ``jpeglib`` package) but the image decodes to the same pixels outside the filled
blocks. The filled area is the regions grown to whole MCUs (the 8x8 block grid; 16 pixels
across where chroma is subsampled), so every component is filled over the same pixels.

Each filled frame is decoded again and compared with the input frame outside the filled
blocks; if any pixel differs (a decoder that smooths chroma across block edges, an unusual
colour transform; usually subsampled colour, whose decoded chroma is interpolated across
MCU edges), nothing is filled here and the caller writes the frames uncompressed
instead, as before. Handled: 8-bit JPEG Baseline (1.2.840.10008.1.2.4.50), monochrome, or
YBR_FULL / YBR_FULL_422 with the usual YCbCr colour space.

References
----------
ITU-T T.81 (JPEG) A.3.1 (level shift), A.3.3 (FDCT: the DC coefficient is 8 times the block's
mean), F.1.1.4 (baseline entropy coding); PS3.5 8.2.1 (JPEG Image Compression),
PS3.3 C.7.6.1.1.5 (Lossy Image Compression: unchanged here, no new lossy step).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from dicomveil.redaction._frames import Frames
from dicomveil.redaction._ocr import Box

__all__ = ["fill_baseline_frames"]

Array = npt.NDArray[np.generic]

JPEG_BASELINE: Final = "1.2.840.10008.1.2.4.50"
BLOCK: Final = 8
_PHOTOMETRIC: Final = {
    "MONOCHROME1": "JCS_GRAYSCALE",
    "MONOCHROME2": "JCS_GRAYSCALE",
    "YBR_FULL": "JCS_YCbCr",
    "YBR_FULL_422": "JCS_YCbCr",
}


def _jpeglib() -> Any | None:
    try:
        import jpeglib  # type: ignore[import-untyped]
    except ImportError:
        return None
    return jpeglib


def _memory_folder() -> str | None:
    """Where the frames pass through libjpeg (it reads and writes files): a memory-backed
    folder when there is one (the pixels may show PHI; the files are removed at once either
    way), else the default temporary folder."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def _spans(
    regions: Sequence[Box], scale: tuple[float, float], blocks: tuple[int, int]
) -> list[tuple[int, int, int, int]]:
    """Block index ranges ``(row0, row1, col0, col1)`` of one component that the regions
    touch; ``scale`` is the component's (vertical, horizontal) sampling over the largest."""
    out = []
    for box in regions:
        r0 = int(np.floor(box.top * scale[0] / BLOCK))
        r1 = min(blocks[0], int(np.ceil(box.bottom * scale[0] / BLOCK)))
        c0 = int(np.floor(box.left * scale[1] / BLOCK))
        c1 = min(blocks[1], int(np.ceil(box.right * scale[1] / BLOCK)))
        if r1 > r0 and c1 > c0:
            out.append((r0, r1, c0, c1))
    return out


def _fill(image: Any, regions: Sequence[Box], black: Sequence[int], shape: tuple[int, int]
          ) -> npt.NDArray[np.bool_]:  # fmt: skip
    """Fill ``image`` (a jpeglib DCT image) in place; return the image pixels it covers."""
    components = [c for c in (image.Y, image.Cb, image.Cr) if c is not None]
    factors = np.asarray(image.samp_factor).reshape(-1, 2)  # (vertical, horizontal)
    most = factors.max(axis=0)
    mcu = (int(BLOCK * most[0]), int(BLOCK * most[1]))  # whole MCUs: components agree
    regions = [
        Box(b.top // mcu[0] * mcu[0], b.left // mcu[1] * mcu[1],
            -(-b.bottom // mcu[0]) * mcu[0], -(-b.right // mcu[1]) * mcu[1], b.score, b.sure)
        for b in regions
    ]  # fmt: skip
    covered = np.zeros(shape, dtype=bool)
    for index, coefficients in enumerate(components):
        scale = (factors[index][0] / most[0], factors[index][1] / most[1])
        step = (BLOCK / scale[0], BLOCK / scale[1])  # image pixels per block
        table = image.qt[int(image.quant_tbl_no[index])]
        dc = int(round(BLOCK * (black[index] - 128) / float(table[0, 0])))
        for r0, r1, c0, c1 in _spans(regions, scale, coefficients.shape[:2]):
            coefficients[r0:r1, c0:c1] = 0
            coefficients[r0:r1, c0:c1, 0, 0] = dc
            covered[round(r0 * step[0]) : round(r1 * step[0]),
                    round(c0 * step[1]) : round(c1 * step[1])] = True  # fmt: skip
    return covered


def fill_baseline_frames(
    frames: Frames, regions: Sequence[Box], blacks: Sequence[Sequence[int]]
) -> list[bytes] | None:
    """The JPEG Baseline frames of ``frames`` with ``regions`` filled black in the DCT
    domain, or ``None`` when this cannot be done without changing other pixels (see the
    module). ``blacks``: the stored black value of each frame, one per sample (YBR:
    ``[0, 128, 128]``). One frame is held at a time."""
    layout = frames.layout
    jpeglib = _jpeglib()
    wanted = _PHOTOMETRIC.get(layout.photometric)
    if jpeglib is None or wanted is None or layout.bits_allocated != 8:
        return None
    out: list[bytes] = []
    with tempfile.TemporaryDirectory(prefix="dicomveil-dct-", dir=_memory_folder()) as folder:
        source, target = Path(folder, "in.jpg"), Path(folder, "out.jpg")
        for index, (frame, black) in enumerate(zip(frames.encoded(), blacks, strict=True)):
            before = frames.decoded(index)
            source.write_bytes(frame)
            try:
                image = jpeglib.read_dct(str(source))
                if str(image.jpeg_color_space).split(".")[-1] != wanted:
                    return None
                covered = _fill(image, regions, black, before.shape[:2])
                image.write_dct(str(target))
            except Exception:  # noqa: BLE001 - libjpeg refuses the stream: re-encode instead
                return None
            data = target.read_bytes()
            after = frames.decode_other(data)
            if after.shape != before.shape or not np.array_equal(after[~covered], before[~covered]):
                return None
            out.append(data)
    return out
