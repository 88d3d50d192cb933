"""``dicomveil verify ORIGINALS OUTPUTS --pixels``: identifying values still readable in the
de-identified pixels are reported (keyword and output, never the value)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from benchmarks.pixel_corpus import Sample, make_sample, to_dataset

from dicomveil.cli.main import main
from dicomveil.redaction.verify import matches, normalised

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _original(folder: Path) -> Sample:
    """One image with the patient's name, ID, birth date burned in (and in its header)."""
    folder.mkdir()
    sample = make_sample("ct", 41, rows=256, columns=256, kind="disc", texts=3,
                         sizes=(14, 16, 18), bits=16)  # fmt: skip
    to_dataset(sample).save_as(folder / "ct.dcm", enforce_file_format=True)
    return sample


def _deid(source: Path, dest: Path, key_file: Path, *options: str) -> None:
    args = ["deid", str(source), str(dest), "--key-file", str(key_file), "-j", "1"]
    for option in options:
        args += ["--option", option]
    assert main(args) == 0


def _verify(
    source: Path, dest: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, dict[str, Any], str]:
    code = main(["verify", str(source), str(dest), "--json", *extra])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.out + captured.err


def test_name_in_pixels_reported_then_cleaned_passes(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str], finder: Any
) -> None:
    source = tmp_path / "in"
    sample = _original(source)
    kept, cleaned = tmp_path / "kept", tmp_path / "cleaned"
    _deid(source, kept, key_file)  # the header is de-identified, the pixels are not
    capsys.readouterr()

    code, result, text = _verify(source, kept, capsys)  # without --pixels: as before
    assert code == 0 and result["leaks"] == [] and "pixel_leaks" not in result

    code, result, text = _verify(source, kept, capsys, "--pixels")
    assert code == 1
    assert result["images"] == 1 and result["leaks"] == []
    found = {leak["attribute"] for leak in result["pixel_leaks"]}
    assert "PatientName" in found and "PatientID" in found
    for value in sample.header.values():  # keywords only, never the values
        assert value not in text
        for part in value.split("^"):
            assert part not in text

    _deid(source, cleaned, key_file, "clean-pixel-data")
    capsys.readouterr()
    code, result, text = _verify(source, cleaned, capsys, "--pixels")
    assert (code, result["pixel_leaks"], result["pixels_unread"]) == (0, [], [])
    assert result["images"] == 1


def test_without_the_extra_pixels_is_a_usage_error(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    source, dest = tmp_path / "in", tmp_path / "out"
    _original(source)
    _deid(source, dest, key_file)
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "rapidocr", None)  # importing it fails
    assert main(["verify", str(source), str(dest), "--pixels"]) == 2
    assert "dicomveil[redaction]" in capsys.readouterr().err
    assert main(["verify", str(source), str(dest)]) == 0


@pytest.mark.parametrize(
    ("value", "read", "expected"),
    [
        ("DOE^JOHN", "Name: D0E*JOHN", True),  # O read as 0, ^ as *
        ("12345678", "ID 1234S678", True),  # 5 read as S
        ("SMITHSON", "SMITHS0M", True),  # one substitution in eight characters
        ("19750302", "1975-03-02", True),
        ("SMITH", "SMYTH", False),  # short values: no edit allowed
        ("12345678", "12344321", False),
    ],
)
def test_fuzzy_match(value: str, read: str, expected: bool) -> None:
    assert matches(normalised(value), normalised(read)) is expected


def test_output_whose_pixels_cannot_be_read_fails(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str], finder: Any
) -> None:
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    source, dest = tmp_path / "in", tmp_path / "out"
    _original(source)
    _deid(source, dest, key_file)
    (path,) = dest.rglob("*.dcm")
    ds = pydicom.dcmread(path)
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([b"\xff\xd8 broken \xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.save_as(path, enforce_file_format=True)
    capsys.readouterr()
    code, result, _ = _verify(source, dest, capsys, "--pixels")
    assert code == 1
    assert result["pixels_unread"] == [str(path)] and result["images"] == 0


def test_small_text_across_the_edge_of_a_brighter_area_is_read(tmp_path: Path) -> None:
    """``verify --pixels`` reads the local-contrast view as the cleaner does: a 9 px
    accession number touching the edge of a brighter organ (see test_clean's test of the
    same image) is one area with the organ in the plain view, and was not read there."""
    from dicomveil.redaction.verify import read_pixels

    sample = make_sample("edge", 1091, kind="disc", sizes=(9, 11, 14), bits=16, signed=True,
                         rows=512, columns=512, texts=4)  # fmt: skip
    accession = next(b for b in sample.boxes if b.text.startswith("A"))
    path = tmp_path / "edge.dcm"
    to_dataset(sample).save_as(path, enforce_file_format=True)
    found = read_pixels(path)
    assert found is not None
    assert matches(normalised(accession.text), found.text)
