"""The pixel benchmark's corpus and scoring (no tool is run here)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from benchmarks.pixel_corpus import make_sample, removed

from benchmarks import pixel_bench
from tests.support.cloud import require_module


def test_scoring_tells_filled_from_untouched(tmp_path: Path) -> None:
    corpus = pixel_bench.build(tmp_path / "corpus", 8)
    assert len(list((tmp_path / "corpus").glob("*.dcm"))) == 8
    untouched = {i: s.pixels[0] for i, s in enumerate(corpus.samples)}
    score = pixel_bench.score(corpus, untouched)
    assert score["boxes"] >= 20 and score["removed_pct"] == 0.0
    assert score["preserved_pct"] == 100.0 and score["controls_changed"] == 0
    filled = {}
    for index, sample in enumerate(corpus.samples):
        frame = sample.pixels[0].copy()
        for box in sample.boxes:  # a fill in the text's own colour hides it too
            frame[box.top : box.bottom, box.left : box.right] = frame.max()
        filled[index] = frame
    assert pixel_bench.score(corpus, filled)["removed_pct"] == 100.0


def test_only_the_value_is_phi() -> None:
    sample = make_sample("labels", seed=4, rows=256, columns=320, texts=4, sizes=(16,))
    assert sample.labels  # "Acc" at least
    texts = {box.text for box in sample.boxes}
    assert sample.header["AccessionNumber"] in texts
    frame = sample.pixels[0].copy()
    for label in sample.labels:  # removing the labels alone removes no PHI
        frame[label.top : label.bottom, label.left : label.right] = 0
    for box in sample.boxes:
        assert not removed(box, sample.mask, sample.pixels[0], frame) or not np.any(
            sample.mask[box.top : box.bottom, box.left : box.right]
        )


def test_in_process_run_with_the_shipped_detector_named(tmp_path: Path) -> None:
    """``--in-process --det-model`` (how detector variants are compared, docs/benchmarks.md):
    the shipped detector named by its path removes every box of a small corpus."""
    require_module("rapidocr", "dicomveil[redaction]")
    shipped = Path(str(resources.files("rapidocr") / "models" / "PP-OCRv6_det_small.onnx"))
    corpus = pixel_bench.build(tmp_path / "corpus", 2)
    run = pixel_bench.run_in_process(corpus, shipped)
    assert run["refused"] == 0 and run["exit"] == 0 and run["cpu_seconds"] > 0
    score = pixel_bench.score(corpus, run["outputs"])
    assert score["boxes"] >= 6 and score["removed_pct"] == 100.0 and score["missing"] == 0


def test_a_missing_detector_model_is_an_error(tmp_path: Path) -> None:
    require_module("rapidocr", "dicomveil[redaction]")
    from dicomveil.redaction import TextFinder

    with pytest.raises(FileNotFoundError):
        TextFinder(det_model=tmp_path / "absent.onnx")
