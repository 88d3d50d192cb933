"""``dicomveil deid SOURCE DEST --option clean-pixel-data`` end to end (the issue's Contract)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from benchmarks.pixel_corpus import Sample, make_sample, to_dataset
from pydicom.data import get_testdata_file

from dicomveil.cli.main import main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def reader(finder: Any) -> Any:
    """A full OCR (detector + recogniser) that returns the text it reads."""
    from rapidocr import RapidOCR

    return RapidOCR(params={"Global.log_level": "error", "Global.use_cls": False})


def _read_text(reader: Any, ds: pydicom.Dataset) -> str:
    """Everything the OCR reads in the first frame, upper-case letters and digits only."""
    pixels = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]
    values = pixels.astype(np.float64)
    view = (values - values.min()) * (255 / max(1.0, float(values.max() - values.min())))
    if ds.PhotometricInterpretation == "MONOCHROME1":
        view = 255 - view
    image = view.astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = np.kron(image, np.ones((2, 2, 1), dtype=np.uint8))  # small text: read it larger
    result = reader(image)
    return re.sub(r"[^A-Z0-9]", "", "".join(result.txts or ()).upper())


def _planted(sample: Sample) -> list[str]:
    last, first = sample.header["PatientName"].split("^")
    return [last, first, sample.header["PatientID"]]


def _corpus(folder: Path) -> list[Sample]:
    folder.mkdir(parents=True)
    samples = [
        # a CT-like image with a name in a corner and no Burned In Annotation attribute
        make_sample("ct", 21, rows=256, columns=256, kind="disc", texts=3, sizes=(12, 14, 16),
                    bits=16, signed=True),
        make_sample("us", 22, rows=240, columns=320, kind="speckle", texts=3, sizes=(11, 13, 15),
                    photometric="RGB"),
        make_sample("control", 23, rows=256, columns=256, kind="smooth", texts=0),
    ]  # fmt: skip
    for index, sample in enumerate(samples):
        ds = to_dataset(sample)
        ds.InstanceNumber = index + 1
        if sample.name == "us":
            ds.Modality = "US"
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
        ds.save_as(folder / f"{index}.dcm", enforce_file_format=True)
    return samples


def _by_number(folder: Path) -> dict[int, pydicom.Dataset]:
    return {int(ds.InstanceNumber): ds for ds in map(pydicom.dcmread, folder.rglob("*.dcm"))}


def test_deid_cleans_every_image(
    tmp_path: Path, key_file: Path, reader: Any, state_home: Path
) -> None:
    source, dest = tmp_path / "in", tmp_path / "out"
    samples = _corpus(source)
    inputs = _by_number(source)
    for number, sample in enumerate(samples, start=1):
        if sample.boxes:  # the OCR used as a witness does read the planted text before
            seen = _read_text(reader, inputs[number])
            assert any(value in seen for value in _planted(sample))
    code = main(["deid", str(source), str(dest), "--option", "clean-pixel-data",
                 "--key-file", str(key_file), "-j", "1"])  # fmt: skip
    assert code == 0
    outputs = _by_number(dest)
    assert len(outputs) == 3
    data = b"".join(p.read_bytes() for p in dest.rglob("*") if p.is_file())
    for number, sample in enumerate(samples, start=1):
        before, after = inputs[number], outputs[number]
        assert after.BurnedInAnnotation == "NO"
        codes = [item.CodeValue for item in after.DeidentificationMethodCodeSequence]
        assert codes[:2] == ["113100", "113101"]
        for keyword in ("Rows", "Columns", "SamplesPerPixel"):
            assert after[keyword].value == before[keyword].value
        assert after.get("NumberOfFrames", 1) == before.get("NumberOfFrames", 1)
        assert after.get("LossyImageCompression", "00") != "01"
        assert after.file_meta.TransferSyntaxUID == before.file_meta.TransferSyntaxUID
        seen = _read_text(reader, after)
        assert not [value for value in _planted(sample) if value in seen]
        for value in sample.header.values():
            assert value.encode() not in data
        if not sample.boxes:
            assert after.PixelData == before.PixelData
    report = json.loads((dest / "dicomveil-report.json").read_text())
    assert report["operations"]["clean-pixel-data"] == 3
    assert report["operations"]["pixel-region-filled"] >= 6
    assert report["files"]["ok"] == 3


def test_without_the_option_behaviour_is_unchanged(tmp_path: Path, key_file: Path) -> None:
    source, dest = tmp_path / "in", tmp_path / "out"
    _corpus(source)
    inputs = _by_number(source)
    assert main(["deid", str(source), str(dest), "--key-file", str(key_file), "-j", "1"]) == 0
    for number, after in _by_number(dest).items():
        assert after.PixelData == inputs[number].PixelData  # copied, not examined
        assert "BurnedInAnnotation" not in after
    report = json.loads((dest / "dicomveil-report.json").read_text())
    assert "clean-pixel-data" not in report["operations"]
    assert report["flags"]  # the ultrasound image is flagged, as before


PYDICOM_IMAGES = ["CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "SC_rgb_rle.dcm",
                  "JPEG2000.dcm", "MR_small_jp2klossless.dcm"]  # fmt: skip


def test_pydicom_images_without_text_unchanged(tmp_path: Path, key_file: Path, finder: Any) -> None:
    """Each image in its own run (MR_small's variants share one SOP Instance UID, so one run
    would keep only the first): no text found, pixel data byte for byte."""
    for name in PYDICOM_IMAGES:
        path = get_testdata_file(name)
        assert path is not None, name
        source, dest = tmp_path / name / "in", tmp_path / name / "out"
        source.mkdir(parents=True)
        shutil.copy(path, source / name)
        code = main(["deid", str(source), str(dest), "--option", "clean-pixel-data",
                     "--key-file", str(key_file), "-j", "1"])  # fmt: skip
        assert code == 0, name
        (output,) = map(pydicom.dcmread, dest.rglob("*.dcm"))
        assert bytes(output.PixelData) == bytes(pydicom.dcmread(path).PixelData), name
        assert output.BurnedInAnnotation == "NO"


def test_image_that_cannot_be_cleaned_is_quarantined(
    tmp_path: Path, key_file: Path, state_home: Path, finder: Any
) -> None:
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    source, dest = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    sample = make_sample("broken", 31, rows=64, columns=64, texts=0)
    ds = to_dataset(sample)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([b"\xff\xd8 broken \xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.save_as(source / "broken.dcm", enforce_file_format=True)
    code = main(["deid", str(source), str(dest), "--option", "clean-pixel-data",
                 "--key-file", str(key_file), "-j", "1",
                 "--quarantine", str(tmp_path / "q")])  # fmt: skip
    assert code == 1
    assert not list(dest.rglob("*.dcm"))
    assert list((tmp_path / "q").rglob("*"))
    report = (dest / "dicomveil-report.json").read_text()
    assert "clean-pixel-data" in report
    for value in sample.header.values():
        assert value not in report


def test_console_script_with_workers(tmp_path: Path, key_file: Path, state_home: Path) -> None:
    """The pool's worker processes load pixel codecs and the model themselves."""
    source, dest = tmp_path / "in", tmp_path / "out"
    _corpus(source)
    exe = shutil.which("dicomveil", path=os.path.dirname(sys.executable))
    assert exe is not None
    result = subprocess.run(
        [exe, "deid", str(source), str(dest), "--option", "clean-pixel-data",
         "--key-file", str(key_file), "--workers", "2", "--json"],
        capture_output=True, text=True, check=False, env={**os.environ},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["files"]["ok"] == 3
