"""Large images are read at their own resolution in overlapping tiles: small text is found
anywhere, also across a tile boundary."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from benchmarks.pixel_corpus import TextBox, fonts, make_sample, removed
from PIL import Image, ImageDraw

from dicomveil.redaction._ocr import OVERLAP, TILE, _spans
from tests.redaction.conftest import Cleaned


@pytest.mark.parametrize("size", [1, 500, TILE + OVERLAP, TILE + OVERLAP + 1, 2500])
def test_tiles_cover_the_image_with_overlap(size: int) -> None:
    spans = _spans(size)
    assert spans[0][0] == 0 and spans[-1][1] == size
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert end - start >= OVERLAP  # a text line up to OVERLAP high lies whole in one tile


@pytest.mark.slow
def test_small_text_on_a_large_radiograph(clean: Callable[..., Cleaned]) -> None:
    sample = make_sample("cr", seed=77, rows=1000, columns=1200, kind="smooth", texts=2,
                         sizes=(12, 14), bits=16)  # fmt: skip
    # plus a name across the boundary of the first two tiles (x from 560 to 660)
    layer = Image.new("L", (1200, 1000), 0)
    font = fonts()[0]
    font = font.font_variant(size=12) if hasattr(font, "font_variant") else font
    ImageDraw.Draw(layer).text((560, 500), "DOE^JOHN 1970", fill=255, font=font)
    ink = np.asarray(layer) > 64
    ys, xs = np.nonzero(ink)
    frame = sample.pixels[0].copy()
    frame[ink] = 65535
    sample.pixels = frame[None]
    sample.mask = sample.mask | ink
    sample.boxes.append(TextBox("DOE^JOHN 1970", int(ys.min()), int(xs.min()),
                                int(ys.max()) + 1, int(xs.max()) + 1, 12))  # fmt: skip
    cleaned = clean(sample)
    before, after = cleaned.frames()
    missed = [b.text for b in sample.boxes if not removed(b, sample.mask, before[0], after[0])]
    assert not missed
