"""A plain line of characters is taken for text without being read; nothing else is.

:func:`dicomveil.redaction._ocr.is_line` decides which detected regions skip the recogniser
(in ``all-text`` mode). Its mistakes would fill non-text (a needle, an edge, speckle), so
those must all go on to the recogniser; a rendered word in the corpus' faces and sizes is a
line.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest
from benchmarks.pixel_corpus import fonts
from PIL import Image, ImageDraw

from dicomveil.redaction._ocr import is_line


def _crop_of(text: str, size: int, face: Any, ink: int, back: int = 128) -> np.ndarray:
    """``text`` rendered on a flat background, cropped to its box plus a margin of a fifth
    of its height (as the detector's boxes are), in RGB."""
    font = face.font_variant(size=size) if hasattr(face, "font_variant") else face
    image = Image.new("L", (size * len(text) + 40, size * 3), back)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((20, size), text, font=font)
    draw.text((20, size), text, fill=ink, font=font)
    pad = max(2, (bottom - top) // 5)
    crop = np.asarray(image)[top - pad : bottom + pad, left - pad : right + pad]
    return np.repeat(crop[:, :, None], 3, axis=2)


@pytest.mark.parametrize("size", [9, 12, 16, 24, 32])
@pytest.mark.parametrize("ink", [255, 0, 190])
def test_rendered_words_are_lines(size: int, ink: int) -> None:
    for face in fonts():
        for text in ("DOE, JOHN", "1975-02-15", "A2880976"):
            assert is_line(_crop_of(text, size, face, ink), 0.8, 1.0), (text, size)


def test_strokes_texture_and_weak_scores_are_not_lines() -> None:
    rng = np.random.default_rng(0)
    word = _crop_of("DOE, JOHN", 16, fonts()[0], 255)
    rows, columns = word.shape[:2]
    needle = np.full_like(word, 128)
    needle[rows // 2 - 1 : rows // 2 + 2, 4:-4] = 255  # one unbroken bright stroke
    speckle = rng.rayleigh(40, word.shape).clip(0, 255).astype(np.uint8)
    blurred = np.repeat(cv2.GaussianBlur(speckle[:, :, 0], (0, 0), 1.5)[:, :, None], 3, axis=2)
    edge = np.full_like(word, 60)
    edge[rows // 2 :] = 200  # the border of a brighter area
    faint = (128 + (word.astype(int) - 128) // 16).astype(np.uint8)
    for crop in (needle, speckle, blurred, edge, faint):
        assert not is_line(crop, 0.9, 1.0)
    assert not is_line(word, 0.55, 1.0)  # the detector is not confident enough
    assert not is_line(word[:, : rows * 2], 0.9, 1.0)  # too short for a line
    assert not is_line(word, 0.9, rows / 70)  # 70 px high in the original image
    assert is_line(word, 0.9, 1.0)


@pytest.mark.slow
def test_lines_read_or_not_find_the_same_regions_in_pydicom_images(finder: Any) -> None:
    """Real images, with text (ultrasound captures) and without: taking plain lines for
    text without reading them finds exactly the regions reading every one finds."""
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    from dicomveil.redaction._frames import pixel_layout
    from dicomveil.redaction._view import local_contrast, views

    for name in ("examples_rgb_color.dcm", "examples_palette.dcm", "CT_small.dcm"):
        path = get_testdata_file(name)
        assert path is not None, name
        ds = dcmread(path)
        frame = ds.pixel_array
        frame = frame[0] if int(ds.get("NumberOfFrames", 1) or 1) > 1 else frame
        images = views(frame, pixel_layout(ds, ds.file_meta.TransferSyntaxUID), ds)
        for image in [local_contrast(images[0]), *images[1:]]:
            plain = finder.find(image, lines=True)
            read = finder.find(image, lines=False)
            assert [(b.top, b.left, b.bottom, b.right) for b in plain] == [
                (b.top, b.left, b.bottom, b.right) for b in read
            ], name
