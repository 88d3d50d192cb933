"""Transfer syntaxes and pixel kinds: lossless stays lossless, the Contract's attributes hold,
and what cannot be cleaned safely is refused."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from benchmarks.pixel_corpus import make_sample, preserved, removed, to_dataset
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
)

from dicomveil.errors import UnsupportedInputError
from tests.redaction.conftest import Cleaned


def _outside_unchanged(cleaned: Cleaned, boxes: list[Any]) -> None:
    before, after = cleaned.frames()
    for frame in range(before.shape[0]):
        same, total = preserved(boxes, before[frame], after[frame])
        assert same == total


def _contract(cleaned: Cleaned) -> None:
    before, after = cleaned.before, cleaned.after
    for keyword in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "PixelRepresentation"):
        assert after[keyword].value == before[keyword].value, keyword
    assert after.get("NumberOfFrames", 1) == before.get("NumberOfFrames", 1)
    assert after.BurnedInAnnotation == "NO"


@pytest.mark.parametrize(
    ("syntax", "photometric", "bits"),
    [
        (RLELossless, "MONOCHROME2", 8),
        (RLELossless, "RGB", 8),
        (RLELossless, "MONOCHROME2", 16),
        (JPEG2000Lossless, "MONOCHROME2", 16),
    ],
)
def test_lossless_syntax_kept(
    syntax: str, photometric: str, bits: int, clean: Callable[..., Cleaned]
) -> None:
    sample = make_sample("lossless", seed=5, rows=200, columns=300, texts=2, sizes=(14, 18),
                         photometric=photometric, bits=bits)  # fmt: skip
    ds = to_dataset(sample)
    ds.compress(syntax)
    cleaned = clean(ds)
    assert cleaned.regions >= 1
    assert cleaned.after.file_meta.TransferSyntaxUID == syntax
    assert cleaned.after.get("LossyImageCompression", "00") != "01"
    _contract(cleaned)
    before, after = cleaned.frames()
    assert all(removed(b, sample.mask, before[0], after[0]) for b in sample.boxes)
    _outside_unchanged(cleaned, sample.boxes + sample.labels)


def test_native_bytes_outside_regions_are_the_input_bytes(clean: Callable[..., Cleaned]) -> None:
    sample = make_sample("native", seed=9, rows=200, columns=300, texts=2, sizes=(16, 20),
                         bits=16, signed=True, kind="disc")  # fmt: skip
    cleaned = clean(sample)
    a = np.frombuffer(cleaned.before.PixelData, dtype="<u2").reshape(200, 300)
    b = np.frombuffer(cleaned.after.PixelData, dtype="<u2").reshape(200, 300)
    changed = a != b
    assert changed.any()
    ys, xs = np.nonzero(changed)
    assert (ys.max() - ys.min()) < 200 and len(ys) < 0.5 * a.size  # only regions changed
    fill = int(np.int16(cleaned.before.pixel_array.min()).view(np.uint16))
    assert set(np.unique(b[changed]).tolist()) == {fill}  # filled with the image's black
    assert cleaned.after.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    _contract(cleaned)


def _jpeg_dataset(sample: Any, colour: bool = False) -> Any:
    """``sample`` as JPEG Baseline (Pillow, quality 92): gray, or YBR_FULL_422 (colour)."""
    ds = to_dataset(sample)
    buffer = io.BytesIO()
    pixels = sample.pixels[0]
    image = Image.fromarray(np.stack([pixels] * 3, axis=-1) if colour else pixels)
    image.save(buffer, format="JPEG", quality=92, subsampling=1)  # 4:2:2 when colour
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    if colour:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 3, "YBR_FULL_422"
        ds.PlanarConfiguration = 0
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return ds


def _blocks_changed_are_flat(before: np.ndarray, after: np.ndarray, step: tuple[int, int]) -> int:
    """How many blocks (``step``: rows, columns of a JPEG MCU) changed; each changed one
    must be filled about flat (one value per sample, give or take the decoder's chroma
    upsampling and rounding at the fill's edges): every pixel of a block left alone keeps
    its value exactly."""
    changed = 0
    for top in range(0, before.shape[0], step[0]):
        for left in range(0, before.shape[1], step[1]):
            a = before[top : top + step[0], left : left + step[1]]
            b = after[top : top + step[0], left : left + step[1]]
            if not np.array_equal(a, b):
                changed += 1
                assert np.ptp(b.reshape(-1, b.shape[2] if b.ndim == 3 else 1), axis=0).max() <= 8
    return changed


@pytest.mark.parametrize("colour", [False, True], ids=["gray", "ybr422"])
def test_jpeg_baseline_filled_in_the_dct_domain(
    clean: Callable[..., Cleaned], colour: bool
) -> None:
    """JPEG Baseline keeps its transfer syntax: the blocks under the text become flat black
    blocks, every other block decodes to the same pixels (no second lossy step)."""
    sample = make_sample("jpeg", seed=11, rows=200, columns=300, texts=2, sizes=(14, 18))
    cleaned = clean(_jpeg_dataset(sample, colour))
    assert cleaned.regions >= 1
    assert cleaned.after.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert cleaned.after.PhotometricInterpretation == cleaned.before.PhotometricInterpretation
    _contract(cleaned)
    before, after = cleaned.frames()
    gray = (lambda f: f[..., 0]) if colour else (lambda f: f)
    assert all(removed(b, sample.mask, gray(before[0]), gray(after[0])) for b in sample.boxes)
    changed = _blocks_changed_are_flat(before[0], after[0], (8, 16) if colour else (8, 8))
    assert 0 < changed < before[0].shape[0] * before[0].shape[1] / 64 / 4


def test_lossy_input_written_uncompressed_and_recorded(
    clean: Callable[..., Cleaned], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the DCT-domain fill cannot be done (here: no jpeglib), the decoded frames are
    written uncompressed and the earlier lossy compression is recorded."""
    from dicomveil.redaction import _dct

    monkeypatch.setattr(_dct, "_jpeglib", lambda: None)
    sample = make_sample("jpeg", seed=11, rows=200, columns=300, texts=2, sizes=(14, 18))
    cleaned = clean(_jpeg_dataset(sample))
    assert cleaned.regions >= 1
    assert cleaned.after.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert cleaned.after.LossyImageCompression == "01"  # the input was lossy: said truthfully
    _contract(cleaned)
    before, after = cleaned.frames()  # decoded input against output: no second lossy step
    assert all(removed(b, sample.mask, before[0], after[0]) for b in sample.boxes)
    _outside_unchanged(cleaned, sample.boxes + sample.labels)


def test_control_jpeg_keeps_its_bytes(clean: Callable[..., Cleaned]) -> None:
    sample = make_sample("jpeg-control", seed=12, rows=200, columns=300, texts=0, kind="smooth")
    cleaned = clean(_jpeg_dataset(sample))
    assert cleaned.regions == 0
    assert cleaned.after.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert cleaned.after.PixelData == cleaned.before.PixelData


def test_undecodable_pixels_refused(finder: Any, tmp_path: Path) -> None:
    from dicomveil.dicomio import read_instance
    from dicomveil.redaction import clean_instance

    sample = make_sample("broken", seed=13, rows=64, columns=64, texts=0)
    ds = to_dataset(sample)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xe0 not a jpeg at all \xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    path = tmp_path / "broken.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(UnsupportedInputError, match="cannot be decoded") as caught:
        clean_instance(read_instance(path), finder)
    assert sample.header["PatientID"] not in str(caught.value)


def test_one_bit_pixels_refused(finder: Any, tmp_path: Path) -> None:
    from dicomveil.dicomio import read_instance
    from dicomveil.redaction import clean_instance

    ds = to_dataset(make_sample("bits", seed=14, rows=64, columns=64, texts=0))
    ds.BitsAllocated = ds.BitsStored = 1
    ds.HighBit = 0
    ds.PixelData = b"\0" * (64 * 64 // 8)
    path = tmp_path / "bits.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(UnsupportedInputError, match="clean-pixel-data"):
        clean_instance(read_instance(path), finder)


def test_odd_sized_8_bit_image_keeps_an_even_value(clean: Callable[..., Cleaned]) -> None:
    sample = make_sample("odd", seed=15, rows=201, columns=301, texts=2, sizes=(16, 20))
    cleaned = clean(sample)
    assert cleaned.regions >= 1
    assert len(cleaned.after.PixelData) == len(cleaned.before.PixelData) == 201 * 301 + 1
    before, after = cleaned.frames()
    assert all(removed(b, sample.mask, before[0], after[0]) for b in sample.boxes)


@pytest.mark.parametrize(
    ("name", "in_dct"),
    [("SC_rgb_jpeg_dcmtk.dcm", True), ("SC_rgb_small_odd_jpeg.dcm", True),
     ("SC_rgb_dcmtk_+eb+cy+s2.dcm", False), ("SC_rgb_dcmtk_+eb+cy+n1.dcm", False)],
)  # fmt: skip
def test_dct_fill_of_pydicom_jpeg_files(name: str, in_dct: bool) -> None:
    """Real JPEG Baseline files (pydicom's, made by dcmtk): 4:4:4 YBR_FULL is filled in the
    DCT domain, every pixel outside the filled MCUs decoding as before; subsampled chroma
    would blend the fill into its neighbours, so it is refused (the caller re-encodes)."""
    from pydicom.data import get_testdata_file

    from dicomveil.dicomio import read_instance
    from dicomveil.redaction._dct import fill_baseline_frames
    from dicomveil.redaction._frames import Frames, pixel_layout
    from dicomveil.redaction._ocr import Box

    instance = read_instance(get_testdata_file(name))
    frames = Frames(instance, pixel_layout(instance.dataset, instance.transfer_syntax))
    region = Box(3, 5, 11, 13, 1.0)  # rows 0-15, columns 0-15 once grown to 8x8 MCUs
    filled = fill_baseline_frames(frames, [region], [[0, 128, 128]])
    assert (filled is not None) == in_dct
    if filled is None:
        return
    before, after = frames.decoded(0), frames.decode_other(filled[0])
    assert np.array_equal(before[16:], after[16:]) and np.array_equal(before[:, 16:], after[:, 16:])
    assert (after[:16, :16, 0] <= 2).all() and not np.array_equal(before[:16, :16], after[:16, :16])
