"""Device region templates (``[[pixel_regions]]``), ``pixel_mode = "regions-only"`` and
regions the recogniser is unsure about (``pixel_unsure``): text inside a template's
rectangles is gone from every frame, every other pixel keeps its value, an image the cleaner
cannot vouch for is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from benchmarks.pixel_corpus import Sample, make_sample, removed, to_dataset

from dicomveil.cli.main import main
from dicomveil.dicomio import read_instance
from dicomveil.errors import ProfileError, UnsupportedInputError
from dicomveil.pipeline.batch_state import policy_to_mapping
from dicomveil.profile.pixel_regions import PixelMode, PixelSettings, UnsureAction, pixel_settings
from dicomveil.profile.policy import Policy, policy_from_mapping
from dicomveil.redaction import Box, TextFinder, clean_instance
from dicomveil.redaction._ocr import verdict

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TEMPLATE = {"manufacturer": "acme*", "model": "SONO 100", "rows": 240, "columns": 320}


class Scripted(TextFinder):
    """A text finder that reports given boxes (the OCR's verdicts are tested on their own;
    this drives the cleaner's decisions); ``None``: it must not be called at all."""

    def __init__(self, boxes: list[Box] | None) -> None:  # no model
        self.boxes = boxes

    def find(self, image: Any, wanted: Any = None, side: int = 0, lines: bool = False) -> list[Box]:
        assert self.boxes is not None, "the OCR was run"
        return list(self.boxes)


def _sample(seed: int = 5) -> Sample:
    return make_sample("band", seed, rows=240, columns=320, kind="speckle", texts=3,
                       sizes=(12, 14, 16))  # fmt: skip


def _rectangles(sample: Sample) -> list[list[int]]:
    """``[x, y, width, height]`` around each planted text box (values and labels)."""
    return [
        [max(0, b.left - 3), max(0, b.top - 3), b.right - b.left + 6, b.bottom - b.top + 6]
        for b in sample.boxes + sample.labels
    ]


def _write(sample: Sample, path: Path, manufacturer: str = "ACME Medical") -> Path:
    ds = to_dataset(sample)
    ds.Manufacturer, ds.ManufacturerModelName = manufacturer, "SONO 100"
    ds.save_as(path, enforce_file_format=True)
    return path


def _outside(rectangles: list[list[int]], shape: tuple[int, ...]) -> np.ndarray:
    keep = np.ones(shape[:2], dtype=bool)
    for x, y, w, h in rectangles:
        keep[y : y + h, x : x + w] = False
    return keep


def test_policy_file_settings_parse_and_round_trip() -> None:
    data = {
        "options": ["clean-pixel-data"],
        "pixel_mode": "regions-only",
        "pixel_unsure": "fill",
        "pixel_regions": [{**TEMPLATE, "modality": "US", "rectangles": [[0, 0, 320, 30]]}],
    }
    policy = policy_from_mapping(data)
    assert policy.pixels.mode is PixelMode.REGIONS_ONLY
    assert policy.pixels.unsure is UnsureAction.FILL
    assert policy_from_mapping(policy_to_mapping(policy)) == policy  # a batch journal
    assert policy.with_options(["retain-uids"]).pixels == policy.pixels
    assert "pixel_mode" not in policy_to_mapping(Policy())  # old journals unchanged
    assert Policy().pixels == PixelSettings()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"pixel_mode": "guess"}, "pixel_mode"),
        ({"pixel_unsure": "pass"}, "pixel_unsure"),
        ({"pixel_regions": {"rectangles": []}}, "array of tables"),
        ({"pixel_regions": [{"rows": 10}]}, "rectangles"),
        ({"pixel_regions": [{"rectangles": [[0, 0, 0, 5]]}]}, "width, height >= 1"),
        ({"pixel_regions": [{"rectangles": [[0, 0, 5]]}]}, "x, y, width, height"),
        ({"pixel_regions": [{"rows": "480", "rectangles": [[0, 0, 5, 5]]}]}, "rows"),
        ({"pixel_regions": [{"vendor": "x", "rectangles": [[0, 0, 5, 5]]}]}, "vendor"),
    ],
)
def test_malformed_settings_are_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        pixel_settings(data)


def test_template_matching() -> None:
    settings = pixel_settings({"pixel_regions": [{**TEMPLATE, "rectangles": [[300, 230, 50, 50]]}]})
    ds = pydicom.Dataset()
    ds.Manufacturer, ds.ManufacturerModelName, ds.Rows, ds.Columns = (
        "ACME Medical",
        "sono 100",
        240,
        320,
    )
    assert settings.rectangles(ds, 240, 320) == [(230, 300, 240, 320)]  # clipped to the image
    ds.Columns = 640
    assert settings.rectangles(ds, 240, 640) == []
    ds.Columns, ds.Manufacturer = 320, "Other"
    assert settings.rectangles(ds, 240, 320) == []


def test_regions_only_fills_the_template_without_ocr(tmp_path: Path) -> None:
    sample = _sample()
    rectangles = _rectangles(sample)
    settings = pixel_settings(
        {"pixel_mode": "regions-only", "pixel_regions": [{**TEMPLATE, "rectangles": rectangles}]}
    )
    instance = read_instance(_write(sample, tmp_path / "in.dcm"))
    result = clean_instance(instance, Scripted(None), settings)
    after = np.frombuffer(result.instance.dataset.PixelData, np.uint8).reshape(240, 320)
    before = sample.pixels[0]
    assert all(removed(b, sample.mask, before, after) for b in sample.boxes)
    keep = _outside(rectangles, before.shape)
    assert np.array_equal(before[keep], after[keep])  # every other pixel exactly
    assert result.regions == len(rectangles)
    assert result.instance.dataset.BurnedInAnnotation == "NO"


def test_regions_only_refuses_an_image_no_template_matches(tmp_path: Path) -> None:
    settings = pixel_settings(
        {
            "pixel_mode": "regions-only",
            "pixel_regions": [{**TEMPLATE, "rectangles": [[0, 0, 9, 9]]}],
        }
    )
    instance = read_instance(_write(_sample(), tmp_path / "in.dcm", manufacturer="Other"))
    with pytest.raises(UnsupportedInputError, match="no \\[\\[pixel_regions\\]\\] template"):
        clean_instance(instance, Scripted(None), settings)


def test_all_text_fills_the_template_where_the_ocr_sees_nothing(
    tmp_path: Path, finder: Any
) -> None:
    """A template's rectangle is filled even where the OCR reads no text (text too faint to
    read is the reason templates exist); the text the OCR finds elsewhere is filled too."""
    sample = _sample(6)
    band = [[0, 0, 320, 8]]  # the top rows: no text was drawn there
    settings = pixel_settings({"pixel_regions": [{**TEMPLATE, "rectangles": band}]})
    instance = read_instance(_write(sample, tmp_path / "in.dcm"))
    result = clean_instance(instance, finder, settings)
    after = np.frombuffer(result.instance.dataset.PixelData, np.uint8).reshape(240, 320)
    assert (after[0:8] == sample.pixels[0].min()).all()  # the frame's black
    assert all(removed(b, sample.mask, sample.pixels[0], after) for b in sample.boxes)


def test_deid_with_a_regions_only_policy(tmp_path: Path, key_file: Path) -> None:
    """End to end: the policy file's templates reach the cleaner; an image of an unknown
    device is quarantined (exit 1), never passed."""
    source, dest, quarantine = tmp_path / "in", tmp_path / "out", tmp_path / "q"
    source.mkdir()
    sample = _sample()
    rectangles = _rectangles(sample)
    _write(sample, source / "known.dcm")
    other = _sample(9)
    _write(other, source / "unknown.dcm", manufacturer="Other Corp")
    policy = tmp_path / "policy.toml"
    rects = ", ".join(f"[{x}, {y}, {w}, {h}]" for x, y, w, h in rectangles)
    policy.write_text(
        'options = ["clean-pixel-data"]\npixel_mode = "regions-only"\n\n[[pixel_regions]]\n'
        'manufacturer = "ACME*"\nrows = 240\ncolumns = 320\n'
        f"rectangles = [{rects}]\n"
    )
    code = main(["deid", str(source), str(dest), "--policy", str(policy), "--key-file",
                 str(key_file), "-j", "1", "--quarantine", str(quarantine)])  # fmt: skip
    assert code == 1
    (output,) = map(pydicom.dcmread, dest.rglob("*.dcm"))
    after = output.pixel_array
    assert all(removed(b, sample.mask, sample.pixels[0], after) for b in sample.boxes)
    keep = _outside(rectangles, after.shape)
    assert np.array_equal(sample.pixels[0][keep], after[keep])
    assert [c.CodeValue for c in output.DeidentificationMethodCodeSequence][:2] == [
        "113100",
        "113101",
    ]
    assert list(quarantine.rglob("*.dcm")) or list(quarantine.rglob("*"))
    report = (dest / "dicomveil-report.json").read_text()
    assert json.loads(report)["files"]["ok"] == 1
    for value in [*sample.header.values(), *other.header.values()]:
        assert value not in report


def test_verdicts() -> None:
    assert verdict("DOE JOHN", 0.9, 14) is True
    assert verdict("DOE", 0.4, 14) is None  # read, but not surely
    assert verdict("~.", 0.2, 14) is False
    assert verdict("P", 0.9, 14) is True
    assert verdict("P", 0.7, 14) is None
    assert verdict("P", 0.9, 200) is False  # one tall "character": anatomy
    assert verdict("", 0.99, 14) is False


def _unsure_case(tmp_path: Path) -> tuple[Any, list[Box]]:
    sample = make_sample("plain", 7, rows=64, columns=96, kind="smooth", texts=0)
    instance = read_instance(_write(sample, tmp_path / "in.dcm"))
    return instance, [Box(10, 10, 20, 40, 0.4, sure=False)]


def test_a_lone_unsure_region_refuses_the_image(tmp_path: Path) -> None:
    instance, boxes = _unsure_case(tmp_path)
    with pytest.raises(UnsupportedInputError, match="could not be told text or not") as caught:
        clean_instance(instance, Scripted(boxes))
    assert "pixel_unsure" in str(caught.value)


def test_unsure_regions_filled_on_request_or_next_to_text(tmp_path: Path) -> None:
    instance, boxes = _unsure_case(tmp_path)
    fill = PixelSettings(unsure=UnsureAction.FILL)
    assert clean_instance(instance, Scripted(boxes), fill).regions == 1
    instance, boxes = _unsure_case(tmp_path)
    beside = [*boxes, Box(10, 42, 20, 80, 0.95)]  # the rest of the same line, surely text
    result = clean_instance(instance, Scripted(beside))
    assert result.regions == 2
    after = np.frombuffer(result.instance.dataset.PixelData, np.uint8).reshape(64, 96)
    assert (after[12:18, 12:38] == after.min()).all()


def _with_other_text(sample: Sample) -> tuple[np.ndarray, list[tuple[slice, slice]]]:
    """The sample's pixels with two more lines drawn in free places: an anatomical label
    (not identifying) and a phone number (identifying by its pattern). Returns the pixels and
    the ``(rows, columns)`` slices of the two lines."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 16)
    image = Image.fromarray(sample.pixels[0].copy())
    draw = ImageDraw.Draw(image)
    taken = np.zeros(sample.pixels[0].shape, dtype=bool)
    for b in sample.boxes + sample.labels:
        taken[max(0, b.top - 8) : b.bottom + 8, max(0, b.left - 8) : b.right + 8] = True
    placed: list[tuple[slice, slice]] = []
    for text in ("LIVER LONG", "TEL 555-867-5309"):
        for top in range(4, 220, 6):
            left, t, right, bottom = draw.textbbox((8, top), text, font=font)
            if not taken[t - 6 : bottom + 6, left - 6 : right + 6].any():
                draw.text((8, top), text, fill=255, font=font)
                taken[t - 6 : bottom + 6, left - 6 : right + 6] = True
                placed.append((slice(t - 1, bottom + 1), slice(left - 1, right + 1)))
                break
    assert len(placed) == 2
    return np.asarray(image), placed


@pytest.mark.parametrize("mode", ["sensitive", "all-text"])
def test_sensitive_mode_keeps_text_that_identifies_nobody(
    mode: str, tmp_path: Path, finder: Any
) -> None:
    sample = _sample(11)
    pixels, (label, phone) = _with_other_text(sample)
    ds = to_dataset(sample)
    ds.PixelData = pixels.tobytes()
    ds.save_as(tmp_path / "in.dcm", enforce_file_format=True)
    settings = pixel_settings({"pixel_mode": mode})
    result = clean_instance(read_instance(tmp_path / "in.dcm"), finder, settings)
    after = np.frombuffer(result.instance.dataset.PixelData, np.uint8).reshape(pixels.shape)
    assert all(removed(b, sample.mask, pixels, after) for b in sample.boxes)  # name, ID, dates
    assert not np.array_equal(pixels[phone], after[phone])  # a phone number: its pattern
    kept = np.array_equal(pixels[label], after[label])
    assert kept is (mode == "sensitive")  # "LIVER LONG": identifies nobody


def test_shipped_ultrasound_templates_parse_and_cite_a_source() -> None:
    from importlib import resources

    from dicomveil.redaction.devices import shipped_regions

    regions = shipped_regions()
    assert len(regions) >= 10 and all(r.rectangles for r in regions)
    text = resources.files("dicomveil.redaction").joinpath("device_regions.toml").read_text()
    assert "github.com/johnperry/CTP" in text and "DicomPixelAnonymizer.script" in text


def test_a_shipped_template_fills_its_band_without_a_policy_template(tmp_path: Path) -> None:
    """An Acuson Sequoia 640x480 image (CTP's signature): its 30-row header band is filled
    under ``regions-only`` with no template in the policy; every other pixel is kept; the
    same image from another device is refused (no template matches)."""
    sample = make_sample("sequoia", 7, rows=480, columns=640, kind="speckle", texts=3,
                         sizes=(12, 14))  # fmt: skip
    settings = pixel_settings({"pixel_mode": "regions-only"})
    for manufacturer, model in (("ACUSON", "SEQUOIA 512"), ("Other", "SEQUOIA 512")):
        ds = to_dataset(sample)
        ds.Modality, ds.Manufacturer, ds.ManufacturerModelName = "US", manufacturer, model
        path = tmp_path / f"{manufacturer}.dcm"
        ds.save_as(path, enforce_file_format=True)
        if manufacturer == "Other":
            with pytest.raises(UnsupportedInputError, match="no \\[\\[pixel_regions\\]\\]"):
                clean_instance(read_instance(path), Scripted(None), settings)
            continue
        result = clean_instance(read_instance(path), Scripted(None), settings)
        after = np.frombuffer(result.instance.dataset.PixelData, np.uint8).reshape(480, 640)
        before = sample.pixels[0]
        assert result.regions == 1
        assert (after[:30] == before.min()).all()
        assert np.array_equal(before[30:], after[30:])
