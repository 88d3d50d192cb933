"""Malformed and hostile input: a clear MalformedInputError, never a traceback or a value."""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomveil.dicomio import is_dicom, read_instance, write_instance
from dicomveil.errors import DeidentificationError, MalformedInputError, UnsupportedInputError
from tests.dicomio.synth import ct_header, encode_header, encode_meta, pixel_header

CANARIES = ("Canary", "CANARY", "PID-", "ACC-", "19700101")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _small_ct(changes: dict[str, str | None] | None = None, *, implicit: bool = False) -> bytes:
    ds = ct_header(3, 4, 4)
    for keyword, value in (changes or {}).items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    header = encode_header(ds, implicit=implicit)
    return header + pixel_header(32, implicit=implicit) + bytes(range(32))


def _nested(implicit: bool) -> bytes:
    """A CT header whose ReferencedImageSequence item holds a nested sequence."""
    ds = ct_header(2, 4, 4)
    inner = Dataset()
    inner.CodeValue = "NESTED"
    inner.CodingSchemeDesignator = "99X"
    ds.ReferencedImageSequence[0].PurposeOfReferenceCodeSequence = Sequence([inner])
    header = encode_header(ds, implicit=implicit)
    return header + pixel_header(32, implicit=implicit) + bytes(32)


def _assert_clean(exc: pytest.ExceptionInfo[BaseException] | BaseException) -> None:
    message = str(exc.value if isinstance(exc, pytest.ExceptionInfo) else exc)
    assert message
    for canary in CANARIES:
        assert canary not in message


class TestRefused:
    """Each kind of malformed input is named in the message."""

    def test_empty_file(self, tmp_path: Path) -> None:
        path = _write(tmp_path / "empty.dcm", b"")
        assert not is_dicom(path)
        with pytest.raises(MalformedInputError, match="empty file") as exc:
            read_instance(path)
        _assert_clean(exc)

    def test_random_bytes(self, tmp_path: Path) -> None:
        path = _write(tmp_path / "random.dcm", random.Random(1).randbytes(4096))
        assert not is_dicom(path)
        with pytest.raises(MalformedInputError, match="not DICOM"):
            read_instance(path)

    def test_text_named_dcm(self, tmp_path: Path) -> None:
        path = _write(tmp_path / "notes.dcm", b"PatientName: Canary^Patient\n" * 20)
        with pytest.raises(MalformedInputError, match="not DICOM") as exc:
            read_instance(path)
        _assert_clean(exc)

    def test_preamble_only(self, tmp_path: Path) -> None:
        path = _write(tmp_path / "p.dcm", b"\0" * 128 + b"DICM")
        assert is_dicom(path)
        with pytest.raises(MalformedInputError, match="missing SOPClassUID"):
            read_instance(path)

    @pytest.mark.parametrize(
        "keyword", ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"]
    )
    def test_missing_uid(self, tmp_path: Path, keyword: str) -> None:
        path = _write(tmp_path / "m.dcm", _small_ct({keyword: None}))
        with pytest.raises(MalformedInputError, match=f"missing {keyword}") as exc:
            read_instance(path)
        _assert_clean(exc)
        assert read_instance(path, require_uids=False).pixel is not None

    def test_empty_uid_counts_as_missing(self, tmp_path: Path) -> None:
        path = _write(tmp_path / "m.dcm", _small_ct({"StudyInstanceUID": ""}))
        with pytest.raises(MalformedInputError, match="missing StudyInstanceUID"):
            read_instance(path)

    def test_truncated_pixel_data(self, tmp_path: Path) -> None:
        path = _write(tmp_path / "t.dcm", _small_ct()[:-5])
        with pytest.raises(MalformedInputError, match="truncated"):
            read_instance(path)

    def test_truncated_header(self, tmp_path: Path) -> None:
        data = _small_ct()
        path = _write(tmp_path / "t.dcm", data[: data.index(b"Canary^Patient") + 3])
        with pytest.raises(MalformedInputError, match="truncated") as exc:
            read_instance(path)
        _assert_clean(exc)

    def test_wrong_element_length(self, tmp_path: Path) -> None:
        data = bytearray(_small_ct())
        at = data.index(b"Canary^Patient") - 2  # the 2-byte length of PatientName
        data[at : at + 2] = struct.pack("<H", 0xFFF0)
        path = _write(tmp_path / "w.dcm", bytes(data))
        with pytest.raises(MalformedInputError, match="wrong length") as exc:
            read_instance(path)
        _assert_clean(exc)

    def test_wrong_item_length_in_sequence(self, tmp_path: Path) -> None:
        ds = ct_header(1, 4, 4)
        data = bytearray(encode_header(ds) + pixel_header(32) + bytes(32))
        item = data.index(b"\xfe\xff\x00\xe0")  # first item of the first sequence
        length = struct.unpack_from("<L", data, item + 4)[0]
        struct.pack_into("<L", data, item + 4, length + 64)
        path = _write(tmp_path / "s.dcm", bytes(data))
        with pytest.raises(MalformedInputError, match="wrong length"):
            read_instance(path)

    @pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
    def test_wrong_length_in_nested_sequence(self, tmp_path: Path, implicit: bool) -> None:
        data = bytearray(_nested(implicit))
        assert read_instance(_write(tmp_path / "ok.dcm", bytes(data))).pixel is not None
        at = data.index(b"NESTED")
        if implicit:
            struct.pack_into("<L", data, at - 4, 0x7000)
        else:
            struct.pack_into("<H", data, at - 2, 0x7000)
        with pytest.raises(MalformedInputError, match="wrong length") as exc:
            read_instance(_write(tmp_path / "bad.dcm", bytes(data)))
        _assert_clean(exc)

    def test_unknown_vr(self, tmp_path: Path) -> None:
        data = bytearray(_small_ct())
        at = data.index(b"Canary^Patient") - 4
        assert data[at : at + 2] == b"PN"
        data[at : at + 2] = b"QQ"
        with pytest.raises(MalformedInputError, match=r"the element at byte \d+ has an unknown VR"):
            read_instance(_write(tmp_path / "v.dcm", bytes(data)))

    def test_item_at_top_level(self, tmp_path: Path) -> None:
        data = _small_ct()
        pixels = data.index(pixel_header(32))
        bad = data[:pixels] + struct.pack("<HHL", 0xFFFE, 0xE000, 0) + data[pixels:]
        with pytest.raises(MalformedInputError, match="top level"):
            read_instance(_write(tmp_path / "i.dcm", bad))

    def test_garbage_after_pixel_data(self, tmp_path: Path) -> None:
        path = _write(tmp_path / "g.dcm", _small_ct() + b"\x01\x02\x03\x04garbage!")
        with pytest.raises(MalformedInputError):
            read_instance(path)

    def test_deeply_nested_sequences(self, tmp_path: Path) -> None:
        ds = ct_header(1, 4, 4)
        inner = Dataset()
        inner.CodeValue = "1"
        for _ in range(80):
            outer = Dataset()
            outer.ConceptNameCodeSequence = Sequence([inner])
            inner = outer
        ds.ContentSequence = Sequence([inner])
        path = _write(tmp_path / "deep.dcm", encode_header(ds))
        with pytest.raises(UnsupportedInputError, match="nested"):
            read_instance(path)

    def test_invalid_transfer_syntax(self, tmp_path: Path) -> None:
        data = _small_ct().replace(b"1.2.840.10008.1.2.1\0", b"1.2.840.10008.1.2.X\0", 1)
        with pytest.raises(MalformedInputError, match="Transfer Syntax UID"):
            read_instance(_write(tmp_path / "ts.dcm", data))

    def test_header_over_budget(self, tmp_path: Path) -> None:
        path = _write(tmp_path / "b.dcm", _small_ct())
        with pytest.raises(UnsupportedInputError, match="header larger"):
            read_instance(path, max_header_bytes=1000)


class TestDeflated:
    """Deflated data sets that are corrupt or cut short."""

    @staticmethod
    def _deflated(body: bytes) -> bytes:
        return encode_meta(ct_header(1, 4, 4), "1.2.840.10008.1.2.1.99") + body

    def test_corrupt(self, tmp_path: Path) -> None:
        path = _write(tmp_path / "d.dcm", self._deflated(b"\xff" * 64))
        with pytest.raises(MalformedInputError, match="deflated"):
            read_instance(path)

    def test_truncated(self, tmp_path: Path) -> None:
        compressed = zlib.compress(b"\x08\x00" * 5000)[2:-4]
        path = _write(tmp_path / "d.dcm", self._deflated(compressed[:20]))
        with pytest.raises(MalformedInputError, match="truncated"):
            read_instance(path)

    def test_bomb(self, tmp_path: Path) -> None:
        deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
        bomb = deflater.compress(b"\0" * (8 << 20)) + deflater.flush()
        path = _write(tmp_path / "d.dcm", self._deflated(bomb))
        with pytest.raises(UnsupportedInputError, match="inflated"):
            read_instance(path, max_header_bytes=1 << 20)


class TestTolerated:
    """Oddities a tolerant reader accepts."""

    def test_zero_padding_after_pixels(self, tmp_path: Path) -> None:
        path = _write(tmp_path / "z.dcm", _small_ct() + b"\0" * 1001)
        instance = read_instance(path)
        assert instance.padding == 1001
        assert len(instance.trailing) == 0

    def test_no_preamble_but_meta(self, tmp_path: Path) -> None:
        path = _write(tmp_path / "n.dcm", _small_ct()[132:])
        assert is_dicom(path)
        instance = read_instance(path)
        assert instance.has_file_meta and not instance.has_preamble

    def test_dicm_without_preamble(self, tmp_path: Path) -> None:
        path = _write(tmp_path / "n.dcm", _small_ct()[128:])
        instance = read_instance(path)
        assert instance.has_file_meta and not instance.has_preamble


def _element_ends(data: bytes) -> tuple[set[int], list[int]]:
    """Return the offsets where an element of ``data`` (explicit VR little endian, after the
    preamble) ends: all of them, and those of the data set (past the File Meta group)."""
    from pydicom.filereader import data_element_generator

    stream = io.BytesIO(data)
    stream.seek(132)
    ends, dataset = set(), []
    for element in data_element_generator(stream, False, True):
        ends.add(stream.tell())
        if element.tag >> 16 != 0x0002:
            dataset.append(stream.tell())
    return ends, dataset


class TestFuzz:
    """Cut and flipped bytes only ever raise our own errors."""

    def test_every_truncation(self, tmp_path: Path) -> None:
        """Every cut is refused with a clean message, but for a cut between two elements
        after the required UIDs and before the pixel data: nothing tells such a file from a
        complete one without pixels, and it is read as exactly the elements before the cut."""
        data = _small_ct()
        ends = _element_ends(data)
        path = tmp_path / "cut.dcm"
        refused = read = 0
        for cut in range(0, len(data) - 32, 7):
            path.write_bytes(data[:cut])
            if cut not in ends[0]:
                with pytest.raises((MalformedInputError, UnsupportedInputError)) as exc:
                    read_instance(path)
                _assert_clean(exc)
                refused += 1
                continue
            try:
                instance = read_instance(path)
            except (MalformedInputError, UnsupportedInputError) as error:
                _assert_clean(error)  # e.g. cut before the required UIDs
                refused += 1
                continue
            assert instance.pixel is None and not instance.trailing
            assert len(instance.dataset) == sum(1 for end in ends[1] if end <= cut)
            read += 1
        assert refused > 1000 and read <= 3

    @pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
    def test_random_corruption(self, tmp_path: Path, out_dir: Path, implicit: bool) -> None:
        rng = random.Random(5)
        original = _nested(implicit)
        path = tmp_path / "fuzz.dcm"
        outcomes = {"read": 0, "refused": 0}
        for i in range(400):
            data = bytearray(original)
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(132, len(data))] = rng.randrange(256)
            path.write_bytes(bytes(data))
            try:
                instance = read_instance(path)
            except (MalformedInputError, UnsupportedInputError):
                outcomes["refused"] += 1
                continue
            outcomes["read"] += 1
            try:
                write_instance(instance, instance.dataset, instance.trailing, out_dir / f"{i}")
            except DeidentificationError:
                pass
        assert outcomes["read"] and outcomes["refused"]


def test_value_bytes_read_as_a_tag_are_not_quoted(tmp_path: Path) -> None:
    """A mutated length makes the reader take four bytes of a name for a tag: the message
    describes it, it does not quote it (``(4F58,4554)`` would be "XOTE")."""
    from tests.engine.rawfile import base_elements, raw_file

    elements = base_elements()
    elements[0x00100010] = (b"PN", b"ABXOTE^ZEBULON  ")
    data = bytearray(raw_file(tmp_path / "ok.dcm", elements).read_bytes())
    at = data.index(b"ABXOTE") - 2
    struct.pack_into("<H", data, at, 2)  # the name's length: 2 instead of 16
    with pytest.raises(MalformedInputError) as exc:
        read_instance(_write(tmp_path / "bad.dcm", bytes(data)))
    message = str(exc.value)
    assert "the element at byte" in message or "a private or unlisted element" in message
    assert "4F58" not in message and "4554" not in message
    _assert_clean(exc)


def test_pydicom_errors_leave_no_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a reading step raises (here pydicom's BytesLengthException, whose message
    quotes the bytes), the reader's error keeps its type only: no value, no cause, no
    context."""
    from pydicom.errors import BytesLengthException

    from dicomveil.dicomio import reader

    def broken(*args: object, **kwargs: object) -> None:
        raise BytesLengthException("received b'Canary^Patient' with length 15")

    monkeypatch.setattr(reader, "scan_dataset", broken)
    with pytest.raises(MalformedInputError, match="BytesLengthException") as exc:
        read_instance(_write(tmp_path / "x.dcm", _small_ct()))
    _assert_clean(exc)
    assert exc.value.__cause__ is None and exc.value.__context__ is None
