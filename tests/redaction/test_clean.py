"""Rendered PHI text is found and filled; everything else keeps its exact value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from benchmarks.pixel_corpus import make_sample, preserved, removed

from tests.redaction.conftest import Cleaned

CASES: dict[str, dict[str, Any]] = {
    "speckle-small": {"kind": "speckle", "sizes": (9, 11, 13)},
    "speckle-low-contrast": {"kind": "speckle", "sizes": (12, 16, 20), "contrast": 0.5},
    "smooth-large": {"kind": "smooth", "sizes": (24, 32, 28)},
    "dark-text": {"kind": "smooth", "sizes": (14, 18, 22), "dark": True},
    "vertical": {"kind": "speckle", "sizes": (14, 16, 18), "vertical": True},
    "ct-16-bit-signed": {"kind": "disc", "sizes": (10, 12, 16), "bits": 16, "signed": True},
    "monochrome1-12-bit": {"kind": "disc", "sizes": (12, 14, 18), "bits": 12,
                           "photometric": "MONOCHROME1"},
    "rgb": {"kind": "speckle", "sizes": (11, 14, 18), "photometric": "RGB"},
}  # fmt: skip


def _check_all_removed(cleaned: Cleaned, boxes: list[Any], mask: np.ndarray) -> None:
    before, after = cleaned.frames()
    for frame in range(before.shape[0]):
        missed = [b.text for b in boxes if not removed(b, mask, before[frame], after[frame])]
        assert not missed, f"frame {frame}: {len(missed)} text box(es) still readable"


@pytest.mark.parametrize("case", sorted(CASES))
def test_text_removed_rest_unchanged(case: str, clean: Callable[..., Cleaned]) -> None:
    sample = make_sample(case, seed=sorted(CASES).index(case), rows=256, columns=320, texts=3,
                         **CASES[case])  # fmt: skip
    assert len(sample.boxes) == 3
    cleaned = clean(sample)
    assert cleaned.regions >= 1
    _check_all_removed(cleaned, sample.boxes, sample.mask)
    before, after = cleaned.frames()
    same, total = preserved(sample.boxes + sample.labels, before[0], after[0])
    # padded regions reach a few pixels past the text; nothing farther than MARGIN changes
    assert same == total


@pytest.mark.parametrize("kind", ["speckle", "smooth", "disc"])
def test_control_without_text_is_pixel_identical(kind: str, clean: Callable[..., Cleaned]) -> None:
    sample = make_sample(f"control-{kind}", seed=42, rows=256, columns=320, kind=kind, texts=0,
                         bits=16 if kind == "disc" else 8)  # fmt: skip
    cleaned = clean(sample)
    assert cleaned.regions == 0
    assert cleaned.after.PixelData == cleaned.before.PixelData
    assert cleaned.after.BurnedInAnnotation == "NO"


def test_cine_static_overlay_and_clock(clean: Callable[..., Cleaned]) -> None:
    sample = make_sample("cine", seed=3, rows=240, columns=320, texts=2, sizes=(12, 16),
                         frames=6, clock=True)  # fmt: skip
    cleaned = clean(sample)
    before, after = cleaned.frames()
    assert after.shape == before.shape
    _check_all_removed(cleaned, sample.boxes, sample.mask)
    # every frame: only pixels near text changed
    for frame in range(before.shape[0]):
        same, total = preserved(sample.boxes + sample.labels, before[frame], after[frame])
        assert same == total


@pytest.mark.parametrize(
    "case",
    [
        {"kind": "smooth", "dark": True},
        {"kind": "speckle", "contrast": 0.5},
        {"kind": "speckle", "photometric": "RGB"},
        {"kind": "disc", "bits": 16, "signed": True},
    ],
)
def test_cine_with_moving_anatomy(case: dict[str, Any], clean: Callable[..., Cleaned]) -> None:
    """Frames that differ almost everywhere are read only through their brightest and
    darkest images: static dark, low-contrast, colour and 16-bit text is still found."""
    sample = make_sample("cine-moving", seed=8, rows=240, columns=320, texts=3,
                         sizes=(11, 14, 18), frames=5, clock=True, **case)  # fmt: skip
    cleaned = clean(sample)
    _check_all_removed(cleaned, sample.boxes, sample.mask)
    before, after = cleaned.frames()
    for frame in range(before.shape[0]):
        same, total = preserved(sample.boxes + sample.labels, before[frame], after[frame])
        assert same == total


def test_small_text_across_the_edge_of_a_brighter_area(clean: Callable[..., Cleaned]) -> None:
    """A 9 px accession number on a 16-bit CT-like disc whose line touches the lower edge
    of a brighter organ: the plain view at the usual enlargement saw text and organ as one
    area and the image went out with the number readable (benchmark corpus, image 91); the
    local-contrast view finds it."""
    sample = make_sample("edge", 1091, kind="disc", sizes=(9, 11, 14), bits=16, signed=True,
                         rows=512, columns=512, texts=4)  # fmt: skip
    accession = next(b for b in sample.boxes if b.text.startswith("A"))
    assert accession.size == 9
    organ_bottom = round(512 * 0.45 + 512 * 0.1)  # lower edge of the brighter area
    assert accession.top - 4 <= organ_bottom <= accession.bottom + 4
    cleaned = clean(sample)
    _check_all_removed(cleaned, sample.boxes, sample.mask)
    before, after = cleaned.frames()
    same, total = preserved(sample.boxes + sample.labels, before[0], after[0])
    assert same == total
