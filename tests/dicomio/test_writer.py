"""The writer: atomicity, hashing, copy fallbacks, and encoding of modified data sets."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence

from dicomveil.dicomio import _copy as copy_module
from dicomveil.dicomio import read_instance, write_instance
from dicomveil.dicomio._encode import Parts, encode_elements, sorted_tags
from dicomveil.errors import DeidentificationError
from tests.dicomio.conftest import comparable, sha256_range
from tests.dicomio.synth import write_multiframe


def _testdata_path(name: str) -> Path:
    found = pydicom.data.get_testdata_file(name)
    assert isinstance(found, str)
    return Path(found)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


class TestAtomic:
    """Nothing half-written is ever visible at the destination."""

    def test_failure_mid_copy_leaves_nothing(
        self, ct_file: Path, out_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def failing_write(fd: int, pieces: list[bytes]) -> None:
            os.write(fd, pieces[0][:100])
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(copy_module, "_writev_all", failing_write)
        instance = read_instance(ct_file)
        dest = out_dir / "ct.dcm"
        with pytest.raises(OSError, match="No space"):
            write_instance(instance, instance.dataset, instance.trailing, dest)
        assert not dest.exists()
        assert _leftovers(out_dir) == []

    def test_failure_keeps_previous_output(
        self, ct_file: Path, out_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        dest = out_dir / "ct.dcm"
        dest.write_bytes(b"previous")

        def interrupted(*args: object) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(copy_module, "_read_exactly", interrupted)
        instance = read_instance(ct_file)
        with pytest.raises(KeyboardInterrupt):
            write_instance(instance, instance.dataset, instance.trailing, dest)
        assert dest.read_bytes() == b"previous"
        assert _leftovers(out_dir) == []

    def test_encoding_error_leaves_nothing(self, ct_file: Path, out_dir: Path) -> None:
        instance = read_instance(ct_file)
        del instance.dataset.SOPInstanceUID
        dest = out_dir / "ct.dcm"
        with pytest.raises(DeidentificationError, match="lacks SOPInstanceUID"):
            write_instance(instance, instance.dataset, instance.trailing, dest)
        assert list(out_dir.iterdir()) == []

    def test_temp_name(self, ct_file: Path, out_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        seen: list[str] = []
        real_replace = os.replace

        def spy(src: str | Path, dst: str | Path) -> None:
            seen.append(Path(src).name)
            real_replace(src, dst)

        monkeypatch.setattr(os, "replace", spy)
        instance = read_instance(ct_file)
        write_instance(instance, instance.dataset, None, out_dir / "x.dcm", fsync=True)
        assert len(seen) == 1
        assert seen[0].startswith(".x.dcm.") and seen[0].endswith(".part")
        assert (out_dir / "x.dcm").exists()

    def test_overwrites_existing(self, ct_file: Path, out_dir: Path) -> None:
        dest = out_dir / "ct.dcm"
        dest.write_bytes(b"old")
        instance = read_instance(ct_file)
        result = write_instance(instance, instance.dataset, None, dest)
        assert dest.stat().st_size == result.size > 3


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10 MB multi-frame instance: large enough for kernel copies."""
    path = tmp_path_factory.mktemp("big") / "big.dcm"
    write_multiframe(path, frames=20)
    return path


class TestCopy:
    """Pixel bytes are copied exactly, by every copy method, hashed or not."""

    @pytest.mark.parametrize("broken", [(), ("copy_file_range",), ("copy_file_range", "sendfile")])
    @pytest.mark.parametrize("hash_output", [False, True])
    def test_kernel_copy_fallbacks(
        self,
        big_file: Path,
        out_dir: Path,
        monkeypatch: pytest.MonkeyPatch,
        broken: tuple[str, ...],
        hash_output: bool,
    ) -> None:
        def unsupported(*args: object) -> int:
            raise OSError(errno.EXDEV, "Invalid cross-device link")

        for name in broken:
            monkeypatch.setattr(os, name, unsupported)
        instance = read_instance(big_file)
        assert instance.pixel is not None
        assert instance.pixel.length >= copy_module.KERNEL_COPY_ABOVE
        dest = out_dir / "big.dcm"
        result = write_instance(
            instance, instance.dataset, instance.trailing, dest, hash_output=hash_output
        )
        if hash_output:
            assert result.sha256 == sha256_range(dest, 0, result.size)
        again = read_instance(dest)
        assert again.pixel is not None
        assert sha256_range(big_file, instance.pixel.offset, instance.pixel.length) == (
            sha256_range(dest, again.pixel.offset, again.pixel.length)
        )
        # the pixel data starts at the same offset within a page as in the source
        assert (again.pixel.offset - instance.pixel.offset) % 4096 == 0
        assert str(again.dataset.file_meta.PrivateInformationCreatorUID).endswith(".1")

    def test_hash_matches_file(self, ct_file: Path, out_dir: Path) -> None:
        instance = read_instance(ct_file)
        dest = out_dir / "ct.dcm"
        result = write_instance(instance, instance.dataset, None, dest, hash_output=True)
        assert result.sha256 == hashlib.sha256(dest.read_bytes()).hexdigest()

    def test_source_shrunk_after_read(self, ct_file: Path, out_dir: Path) -> None:
        instance = read_instance(ct_file)
        with ct_file.open("r+b") as fp:
            fp.truncate(ct_file.stat().st_size - 100)
        with pytest.raises(DeidentificationError, match="shrank"):
            write_instance(instance, instance.dataset, None, out_dir / "x.dcm")
        assert list(out_dir.iterdir()) == []


class TestDeferred:
    """Large values stay in the file: loaded on access, otherwise copied as bytes."""

    def test_deferred_values_copied(self, ct_file: Path, out_dir: Path) -> None:
        eager = read_instance(ct_file)
        lazy = read_instance(ct_file, defer_size=256)
        deferred = [e for e in lazy.dataset._dict.values() if getattr(e, "value", 1) is None]
        assert deferred, "the synthetic file has private OB values larger than 256 bytes"
        a = write_instance(eager, eager.dataset, None, out_dir / "a", hash_output=True)
        b = write_instance(lazy, lazy.dataset, None, out_dir / "b", hash_output=True)
        assert a == b

    def test_deferred_value_loads_on_access(self, ct_file: Path) -> None:
        lazy = read_instance(ct_file, defer_size=256)
        block = lazy.dataset.private_block(0x0029, "ACME CSA HEADER")
        assert block[0x10].value == b"CANARY-CSA" * 400


def _modify(ds: Dataset) -> None:
    """Changes an engine makes: replace, empty, delete, add, nested edits, private tags."""
    ds.PatientName = "ANON^0001"
    ds.PatientID = "P0001"
    ds.PatientBirthDate = ""
    ds.AccessionNumber = None
    ds.StudyInstanceUID = "2.25.42"
    ds.SOPInstanceUID = "2.25.4242"
    ds.InstitutionName = "X"  # odd length: padded
    ds.ContentDate = "20240101"
    ds.SliceLocation = "12.5"
    ds.InstanceNumber = 7
    ds.ImageType = ["DERIVED", "SECONDARY"]
    del ds.OperatorsName
    del ds[0x00191010]
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "dicomveil basic"
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "2.25.7"
    item = Dataset()
    item.CodeValue = "113100"
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = "Basic Application Confidentiality Profile"
    ds.DeidentificationMethodCodeSequence = Sequence([item])


class TestModified:
    """Modified data sets are written exactly as pydicom would write them."""

    @pytest.mark.parametrize(("implicit", "little"), [(False, True), (True, True), (False, False)])
    def test_matches_pydicom(
        self, tmp_path: Path, out_dir: Path, implicit: bool, little: bool
    ) -> None:
        from tests.dicomio.synth import ct_header, encode_header, pixel_header

        ds = ct_header(5, 4, 4)
        src = tmp_path / "src.dcm"
        pixels = bytes(range(32))
        if implicit:
            tail = pixel_header(32, implicit=True) + pixels
        elif little:
            tail = pixel_header(32) + pixels
        else:
            tail = b"\xe0\x7f\x10\x00OW\x00\x00\x00\x00\x00\x20" + pixels
        src.write_bytes(encode_header(ds, implicit=implicit, little=little) + tail)
        instance = read_instance(src)
        _modify(instance.dataset)
        dest = out_dir / "out.dcm"
        write_instance(instance, instance.dataset, instance.trailing, dest)

        expected = pydicom.dcmread(src)
        _modify(expected)
        pydicom.dcmwrite(tmp_path / "ref.dcm", expected)
        reference = pydicom.dcmread(tmp_path / "ref.dcm")
        output = pydicom.dcmread(dest)
        assert output.original_encoding == (implicit, little)
        assert comparable(output) == comparable(reference)

    @staticmethod
    def _reference_dataset(charset: str) -> Dataset:
        ds = Dataset()
        ds.SpecificCharacterSet = charset
        ds.PatientName = "Anon^Ymous"
        ds.OperatorsName = "A^B=C^D"
        ds.ReferringPhysicianName = ""
        ds.PerformingPhysicianName = ["X^Y", "Z"]
        ds.PatientID = "ODD"
        ds.StudyDate = "20240101"
        ds.StudyTime = "1010"
        ds.Modality = "CT"
        ds.SOPInstanceUID = "1.2.3"
        ds.AccessionNumber = ""
        ds.StudyDescription = None
        ds.TextValue = "long text " * 1000
        ds.RetrieveURL = "http://x/y"
        ds.SeriesNumber = 3
        ds.ImageType = ["A", "B", "ODD"]
        ds.DeidentificationMethod = ["basic", "clean"]
        ds.InstitutionName = "Klinikum Müller"
        ds.Rows = 512
        ds.PixelRepresentation = 1
        ds.SmallestImagePixelValue = -3
        ds.LargestImagePixelValue = 300
        ds.SimpleFrameList = [1, 2, 70000]
        ds.RecommendedDisplayFrameRateInFloat = 2.5
        ds.PixelDataProviderURL = "http://x/" + "y" * 99
        ds.ReferencePixelPhysicalValueX = 1.25
        ds.ScanningSequence = ["SE", "IR"]
        ds.ImagePositionPatient = ["1.5", "2", "-3"]
        code = Dataset()
        code.CodeValue = "113100"
        code.CodingSchemeDesignator = "DCM"
        code.CodeMeaning = "Basic Application Confidentiality Profile Müller"
        inner = Dataset()
        inner.ReferencedSOPInstanceUID = "2.25.7"
        inner.is_undefined_length_sequence_item = True
        code.ReferencedSOPSequence = Sequence([inner])
        ds.DeidentificationMethodCodeSequence = Sequence([code, Dataset()])
        ds.ReferencedImageSequence = Sequence([])
        ds.ReferencedImageSequence.is_undefined_length = True
        ds["ReferencedImageSequence"].is_undefined_length = True
        return ds

    @pytest.mark.parametrize("charset", ["ISO_IR 100", "ISO_IR 192"])
    def test_fast_encoding_equals_pydicom(self, charset: str) -> None:
        ds = self._reference_dataset(charset)
        for implicit, little in ((True, True), (False, True), (False, False)):
            reference = DicomBytesIO()
            reference.is_implicit_VR, reference.is_little_endian = implicit, little
            write_dataset(reference, ds)
            parts = Parts()
            encode_elements(ds, sorted_tags(ds), implicit, little, parts)
            assert parts.finish() == [reference.getvalue()]

    def test_converted_sequences_equal_pydicom(self) -> None:
        src = _testdata_path("rtplan.dcm")  # implicit VR, nested sequences
        instance = read_instance(src)
        ds = instance.dataset
        for elem in list(ds):  # convert every element, sequences included
            assert elem is not None
        ds.BeamSequence[0].BeamName = "NEW"
        reference = DicomBytesIO()
        reference.is_implicit_VR, reference.is_little_endian = True, True
        write_dataset(reference, ds)
        parts = Parts()
        encode_elements(ds, sorted_tags(ds), True, True, parts)
        assert b"".join(p for p in parts.finish() if isinstance(p, bytes)) == (reference.getvalue())

    def test_value_too_long_for_vr(self, ct_file: Path, out_dir: Path) -> None:
        """A strict writer refuses, where pydicom would silently switch the VR to UN."""
        instance = read_instance(ct_file)
        with pytest.warns(UserWarning):  # pydicom checks values as they are set
            instance.dataset.add_new(0x00091010, "LO", "A" * 70000)
        with pytest.raises(
            DeidentificationError, match=r"a private or unlisted element is too long"
        ):
            write_instance(instance, instance.dataset, None, out_dir / "x.dcm")
        del instance.dataset[0x00091010]
        with pytest.warns(UserWarning):
            instance.dataset.PatientName = "A" * 70000
        with pytest.raises(DeidentificationError, match=r"\(0010,0010\) is too long"):
            write_instance(instance, instance.dataset, None, out_dir / "x.dcm")
        assert list(out_dir.iterdir()) == []

    def test_charset_change_reencodes_raw_text(self, tmp_path: Path, out_dir: Path) -> None:
        from tests.dicomio.synth import ct_header, encode_header, pixel_header

        ds = ct_header(1, 2, 2)
        ds.PatientName = "Müller^Jörg"
        src = tmp_path / "latin1.dcm"
        src.write_bytes(encode_header(ds) + pixel_header(8) + bytes(8))
        instance = read_instance(src)
        instance.dataset.SpecificCharacterSet = "ISO_IR 192"
        dest = out_dir / "utf8.dcm"
        write_instance(instance, instance.dataset, None, dest)
        assert "Müller^Jörg".encode() in dest.read_bytes()
        assert pydicom.dcmread(dest).PatientName == "Müller^Jörg"


class TestPlacement:
    """Elements land on the right side of the pixel data, whichever set holds them."""

    def test_merge_around_pixels(self, ct_file: Path, out_dir: Path) -> None:
        instance = read_instance(ct_file)
        trailing = Dataset()
        trailing.add_new(0x7FE10010, "LO", "AFTER PIXELS")
        trailing.add_new(0x00431001, "LO", "BEFORE PIXELS")
        trailing.add_new(0x00430010, "LO", "ACME")
        instance.dataset.add_new(0x7FE30010, "LO", "ALSO AFTER")
        dest = out_dir / "ct.dcm"
        write_instance(instance, instance.dataset, trailing, dest)
        again = read_instance(dest)
        assert 0x00431001 in again.dataset and 0x00430010 in again.dataset
        assert sorted(int(t) for t in again.trailing.keys()) == [0x7FE10010, 0x7FE30010]

    def test_duplicate_between_sets(self, ct_file: Path, out_dir: Path) -> None:
        instance = read_instance(ct_file)
        trailing = Dataset()
        trailing.PatientID = "dup"
        trailing.add_new(0x7FE10010, "LO", "X")
        with pytest.raises(ValueError, match="both"):
            write_instance(instance, instance.dataset, trailing, out_dir / "x")

    def test_own_pixel_data_replaces_source(self, ct_file: Path, out_dir: Path) -> None:
        instance = read_instance(ct_file)
        instance.dataset.PixelData = b"\x01\x02" * (64 * 64)
        instance.dataset["PixelData"].VR = "OW"
        dest = out_dir / "ct.dcm"
        write_instance(instance, instance.dataset, instance.trailing, dest)
        assert pydicom.dcmread(dest).PixelData == b"\x01\x02" * (64 * 64)
