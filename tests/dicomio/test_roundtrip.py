"""Round trips of every file shipped with pydicom, and of synthetic files."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import UID

from dicomveil.dicomio import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    is_dicom,
    read_instance,
    write_instance,
)
from dicomveil.errors import MalformedInputError, UnsupportedInputError
from tests.dicomio.conftest import (
    comparable,
    dcmread_quiet,
    file_id,
    pydicom_files,
    sha256_range,
)

NOT_DICOM = {
    "charset_files/FileInfo.txt",
    "test_files/README.txt",
    "test_files/crayons.icc",
    "test_files/dicomdirtests/README.txt",
    "test_files/dicomdirtests/TINY_ALPHA/README",
    "test_files/rtplan.dump",
    "test_files/rtstruct.dump",
    "test_files/test1.json",
    "test_files/test_PN.json",
    "test_files/zipMR.gz",
    # byte-shifted copy of CT_small: pydicom itself only finds one garbage element
    "test_files/no_meta.dcm",
}
BROKEN = {
    "test_files/MR_truncated.dcm": "truncated",
    "test_files/rtplan_truncated.dcm": "truncated",
    # tags removed by hand from a DICOMDIR, item lengths left unchanged
    "test_files/dicomdirtests/DICOMDIR-nooffset": "wrong length",
}
REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
ALL_FILES = pydicom_files()


def _testdata(name: str) -> Path:
    found = pydicom.data.get_testdata_file(name)
    assert isinstance(found, str)
    return Path(found)


def _missing_uids(path: Path) -> list[str]:
    ds = dcmread_quiet(path, force=True)
    return [kw for kw in REQUIRED if not ds.get(kw)]


def _round_trip(src: Path, dest: Path) -> None:
    """Read `src` leniently, write `dest`, and check it against pydicom's reading of `src`."""
    with warnings.catch_warnings():
        # some pydicom files hold invalid values on purpose; pydicom warns as it decodes them
        warnings.simplefilter("ignore", UserWarning)
        _checked_round_trip(src, dest)


def _checked_round_trip(src: Path, dest: Path) -> None:
    instance = read_instance(src, require_uids=False)
    dataset = instance.dataset
    if "SOPClassUID" not in dataset:  # DICOMDIRs and fragments: give them an identity
        dataset.SOPClassUID = "1.2.840.10008.1.3.10"
    if "SOPInstanceUID" not in dataset:
        dataset.SOPInstanceUID = "2.25.1"
    result = write_instance(instance, dataset, instance.trailing, dest, hash_output=True)
    assert result.size == dest.stat().st_size
    assert result.sha256 == sha256_range(dest, 0, result.size)

    original = dcmread_quiet(src, force=True)
    output = pydicom.dcmread(dest)  # strict: the output is a conformant Part 10 file
    expected, actual = comparable(original), comparable(output)
    for keyword in ("SOPClassUID", "SOPInstanceUID"):
        expected.pop(int(pydicom.datadict.tag_for_keyword(keyword) or 0), None)
        actual.pop(int(pydicom.datadict.tag_for_keyword(keyword) or 0), None)
    assert sorted(actual) == sorted(expected)
    for tag, elem in expected.items():
        assert actual[tag] == elem, f"{tag:08X} differs"

    meta = output.file_meta
    assert meta.TransferSyntaxUID == instance.transfer_syntax
    assert meta.MediaStorageSOPInstanceUID == output.SOPInstanceUID
    assert meta.MediaStorageSOPClassUID == output.SOPClassUID
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.ImplementationVersionName == IMPLEMENTATION_VERSION_NAME
    assert "SourceApplicationEntityTitle" not in meta
    assert output.preamble == b"\0" * 128
    if original.file_meta.get("TransferSyntaxUID") and src.name != "SC_rgb_jpeg.dcm":
        assert meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID

    again = read_instance(dest, require_uids=False)
    assert (again.pixel is None) == (instance.pixel is None)
    if instance.pixel is not None and not instance.is_deflated:
        assert again.pixel is not None
        before = sha256_range(src, instance.pixel.offset, instance.pixel.length)
        after = sha256_range(dest, again.pixel.offset, again.pixel.length)
        if (again.is_implicit_vr, again.is_little_endian) == (
            instance.is_implicit_vr,
            instance.is_little_endian,
        ):
            assert before == after


@pytest.mark.parametrize("path", ALL_FILES, ids=file_id)
def test_pydicom_file(path: Path, out_dir: Path) -> None:
    """Every pydicom file either round-trips, or is refused with MalformedInputError."""
    name = file_id(path)
    if name in NOT_DICOM:
        assert not is_dicom(path)
        with pytest.raises(MalformedInputError, match="not DICOM"):
            read_instance(path)
        return
    assert is_dicom(path)
    if name in BROKEN:
        with pytest.raises(MalformedInputError, match=BROKEN[name]):
            read_instance(path, require_uids=False)
        return
    missing = _missing_uids(path)
    if "DICOMDIR" in name:
        with pytest.raises(UnsupportedInputError, match="DICOMDIR"):
            read_instance(path)
    elif missing:
        with pytest.raises(MalformedInputError, match="missing " + missing[0]):
            read_instance(path)
    else:
        read_instance(path)
    _round_trip(path, out_dir / "out.dcm")


class TestTransferSyntax:
    """Outputs keep their input's transfer syntax."""

    @pytest.mark.parametrize(
        ("name", "syntax"),
        [
            ("MR_small_implicit.dcm", "1.2.840.10008.1.2"),
            ("MR_small.dcm", "1.2.840.10008.1.2.1"),
            ("MR_small_bigendian.dcm", "1.2.840.10008.1.2.2"),
            ("image_dfl.dcm", "1.2.840.10008.1.2.1.99"),
            ("JPEG-lossy.dcm", "1.2.840.10008.1.2.4.51"),
            ("SC_rgb_jpeg_dcmtk.dcm", "1.2.840.10008.1.2.4.50"),
            ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91"),
            ("MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.90"),
            ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5"),
            ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),
        ],
    )
    def test_syntax_kept(self, name: str, syntax: str, out_dir: Path) -> None:
        src = _testdata(name)
        instance = read_instance(src)
        assert instance.transfer_syntax == syntax
        dest = out_dir / name
        write_instance(instance, instance.dataset, instance.trailing, dest)
        output = pydicom.dcmread(dest)
        assert output.file_meta.TransferSyntaxUID == syntax
        assert output.PixelData == dcmread_quiet(src).PixelData

    def test_deflated_is_redeflated(self, out_dir: Path) -> None:
        src = _testdata("image_dfl.dcm")
        instance = read_instance(src)
        assert instance.is_deflated
        assert instance.pixel is not None and instance.pixel.data is not None
        dest = out_dir / "dfl.dcm"
        write_instance(instance, instance.dataset, instance.trailing, dest)
        raw = dest.read_bytes()
        assert b"ORIGINAL" not in raw  # the data set is compressed, not plain
        assert dest.stat().st_size < 2 * src.stat().st_size

    def test_implicit_data_set_under_jpeg_syntax_is_made_explicit(self, out_dir: Path) -> None:
        """SC_rgb_jpeg.dcm declares JPEG Baseline but encodes its data set implicitly."""
        src = _testdata("SC_rgb_jpeg.dcm")
        instance = read_instance(src)
        assert instance.is_implicit_vr
        assert instance.transfer_syntax == UID("1.2.840.10008.1.2.4.50")
        dest = out_dir / "jpeg.dcm"
        write_instance(instance, instance.dataset, instance.trailing, dest)
        with pytest.warns(UserWarning, match="Expected explicit VR"):
            pydicom.dcmread(src)
        output = pydicom.dcmread(dest)  # no warning: warnings are errors in this suite
        assert output.original_encoding == (False, True)
        assert output.PixelData == dcmread_quiet(src).PixelData

    def test_no_meta_files_gain_meta(self, out_dir: Path) -> None:
        for name, syntax in (
            ("ExplVR_BigEndNoMeta.dcm", "1.2.840.10008.1.2.2"),
            ("ExplVR_LitEndNoMeta.dcm", "1.2.840.10008.1.2.1"),
            ("rtstruct.dcm", "1.2.840.10008.1.2"),
        ):
            src = _testdata(name)
            instance = read_instance(src)
            assert not instance.has_file_meta and not instance.has_preamble
            assert instance.transfer_syntax == syntax
            dest = out_dir / name
            write_instance(instance, instance.dataset, instance.trailing, dest)
            assert pydicom.dcmread(dest).file_meta.TransferSyntaxUID == syntax


class TestSynthetic:
    """Byte-level properties on generated files."""

    def test_untouched_header_is_byte_identical(self, ct_file: Path, out_dir: Path) -> None:
        instance = read_instance(ct_file)
        dest = out_dir / "ct.dcm"
        write_instance(instance, instance.dataset, instance.trailing, dest)
        src_bytes, out_bytes = ct_file.read_bytes(), dest.read_bytes()
        src_meta_end = 132 + 12 + int.from_bytes(src_bytes[140:144], "little")
        out_meta_end = 132 + 12 + int.from_bytes(out_bytes[140:144], "little")
        assert out_bytes[out_meta_end:] == src_bytes[src_meta_end:]

    def test_output_is_deterministic(self, ct_file: Path, out_dir: Path) -> None:
        instance = read_instance(ct_file)
        first = write_instance(instance, instance.dataset, None, out_dir / "a", hash_output=True)
        second = write_instance(instance, instance.dataset, None, out_dir / "b", hash_output=True)
        assert first == second

    def test_trailing_elements_are_kept_after_pixels(self, tmp_path: Path) -> None:
        src = _testdata("CT_small.dcm")
        instance = read_instance(src)
        assert [int(t) for t in instance.trailing.keys()] == [0xFFFCFFFC]
        dest = tmp_path / "ct.dcm"
        write_instance(instance, instance.dataset, instance.trailing, dest)
        again = read_instance(dest)
        assert [int(t) for t in again.trailing.keys()] == [0xFFFCFFFC]

    def test_datasets_look_constructed(self, ct_file: Path) -> None:
        """Data sets are built without pydicom's constructor but must not differ from one."""
        instance = read_instance(ct_file)
        reference = pydicom.dcmread(ct_file)
        ours = set(instance.dataset.__dict__) - {"_dicomveil_source_window"}
        assert ours == set(reference.__dict__)
        assert set(instance.trailing.__dict__) - {"_dicomveil_source_window"} == ours
        assert set(instance.dataset.file_meta.__dict__) == set(reference.file_meta.__dict__)
        assert instance.dataset.filename == str(ct_file)
        assert instance.dataset.original_encoding == reference.original_encoding
        assert instance.dataset.original_character_set == reference.original_character_set

    def test_dropping_pixel_data(self, ct_file: Path, out_dir: Path) -> None:
        instance = read_instance(ct_file)
        dest = out_dir / "nopix.dcm"
        write_instance(dataclasses.replace(instance, pixel=None), instance.dataset, None, dest)
        assert "PixelData" not in pydicom.dcmread(dest)
