"""Data safety of ``deid`` and ``batch`` on real files that broke them (issue 11).

Nothing is written outside DEST (missing PatientID/StudyID, retained UIDs that are paths), one
file never sinks the run, no exception text reaches the terminal or a report, inputs sharing a
SOP Instance UID are never silently lost.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from dicomveil.cli.main import main
from dicomveil.errors import UnsafePathError
from dicomveil.paths import ContainedRoot, contained_path
from tests.pipeline.batch_support import cli_main, only_batch
from tests.pipeline.escapes import identifier_less_inputs, nothing_written_outside

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.usefixtures("batch_home"),  # a private $DICOMVEIL_HOME for every test
]


@pytest.fixture
def key(tmp_path: Path) -> list[str]:
    path = tmp_path / "pseudonym.key"
    path.write_text("data-safety-test-key-0123456789abcdef\n")
    return ["--key-file", str(path)]


def _report(dest: Path) -> dict[str, object]:
    found: dict[str, object] = json.loads((dest / "dicomveil-report.json").read_text())
    return found


def _outputs(dest: Path) -> dict[str, bytes]:
    return {p.relative_to(dest).as_posix(): p.read_bytes() for p in sorted(dest.rglob("*.dcm"))}


def _vault_instances(capsys: pytest.CaptureFixture[str]) -> int:
    capsys.readouterr()
    assert main(["vault", "stats", "--json"]) == 0
    return int(json.loads(capsys.readouterr().out)["instances"])


class TestPathPrimitive:
    @pytest.mark.parametrize(
        "key",
        [
            "/etc/x",
            "a//b",
            "../x",
            "a/../../x",
            "a/./b",
            "a\\b",
            "a/b\x00c",
            "a/\x1bb",
            "",
            "x" * 201,
        ],  # noqa: E501
    )
    def test_refused(self, tmp_path: Path, key: str) -> None:
        with pytest.raises(UnsafePathError) as caught:
            contained_path(tmp_path, key)
        assert key not in str(caught.value) or not key  # never quoted
        with pytest.raises(UnsafePathError):
            ContainedRoot(tmp_path).prepare(key)

    def test_link_leading_out(self, tmp_path: Path) -> None:
        (tmp_path / "root").mkdir()
        (tmp_path / "root" / "out").symlink_to(tmp_path)
        with pytest.raises(UnsafePathError, match="outside its root"):
            contained_path(tmp_path / "root", "out/x.dcm")
        with pytest.raises(UnsafePathError, match="outside its root"):
            ContainedRoot(tmp_path / "root").prepare("out/sub/x.dcm")
        assert not (tmp_path / "sub").exists()  # refused before making the folder
        assert contained_path(tmp_path / "root", "in/x.dcm") == tmp_path / "root/in/x.dcm"


class TestMissingIdentifiers:
    def test_deid_writes_only_inside_dest(
        self, tmp_path: Path, key: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        inputs = identifier_less_inputs(tmp_path / "in")
        dest = tmp_path / "out"
        with nothing_written_outside(tmp_path, dest, tmp_path / "home"):
            code = main(["deid", str(tmp_path / "in"), str(dest), *key, "-j", "2"])
        assert code in (0, 1)
        report = _report(dest)
        files = report["files"]
        assert isinstance(files, dict)
        assert files["total"] == len(inputs)
        outputs = _outputs(dest)
        assert len(outputs) == files["ok"] >= 5
        for name in outputs:  # always four levels: keyed patient and study folders
            patient, study, series, instance = name.split("/")
            assert patient.startswith("P") and len(patient) == 16
            assert study.startswith("S") and len(study) == 16
            assert series.startswith("2.25.") and instance.startswith("2.25.")
        # and the way back was recorded for every output
        assert _vault_instances(capsys) == len(outputs)

    def test_patient_folder_is_the_patients_pseudonym(self, tmp_path: Path, key: list[str]) -> None:
        (tmp_path / "in").mkdir()
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        del ds.PatientID
        ds.save_as(tmp_path / "in" / "without.dcm")
        dest = tmp_path / "out"
        assert main(["deid", str(tmp_path / "in"), str(dest), *key, "-j", "1"]) == 0
        [name] = _outputs(dest)
        [path] = dest.rglob("*.dcm")
        out = pydicom.dcmread(path)
        # the folder is the keyed pseudonym the engine gives the patient (PatientName)
        assert name.split("/")[0] == str(out.PatientName) != ""
        assert "PatientID" not in out  # the output itself is not changed

    def test_batch_to_a_folder(
        self,
        tmp_path: Path,
        batch_home: Path,
        key_file: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        inputs = identifier_less_inputs(tmp_path / "in")
        dest = tmp_path / "dest"
        argv = ["batch", str(tmp_path / "in"), "--dest", str(dest), "--key-file", str(key_file)]
        with nothing_written_outside(tmp_path, dest, batch_home):
            code = cli_main([*argv, "-j", "2", "--json"])
        summary = json.loads(capsys.readouterr().out)
        assert code in (0, 1) and summary["state"] == "complete"
        counted = summary["inputs"]
        assert counted["uploaded"] + counted["failed"] + counted["skipped"] == len(inputs)
        batch_id = only_batch(batch_home)
        stored = list((dest / batch_id).rglob("*.dcm"))
        assert len(stored) == counted["uploaded"] >= 5
        for path in stored:  # BATCH/STUDY/SERIES/INSTANCE.dcm, never an empty segment
            study, series, _ = path.relative_to(dest / batch_id).parts
            assert study.startswith("S") and series.startswith("2.25.")


def _with_series_uid(source: str, uid: str, target: Path) -> Path:
    ds = pydicom.dcmread(get_testdata_file(source))
    ds.SeriesInstanceUID = uid
    ds.save_as(target)
    return target


class TestRetainedUids:
    def test_invalid_uids_are_refused_not_paths(
        self, tmp_path: Path, key: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        inputs = tmp_path / "a" / "b" / "in"
        inputs.mkdir(parents=True)
        _with_series_uid("CT_small.dcm", "../../../../zqx", inputs / "dots.dcm")
        _with_series_uid("MR_small.dcm", "1.2.3\x004", inputs / "nul.dcm")
        _with_series_uid("rtplan.dcm", "/zqy", inputs / "abs.dcm")
        shutil.copy(get_testdata_file("JPEG2000.dcm"), inputs / "fine.dcm")
        dest = tmp_path / "a" / "b" / "out"
        with nothing_written_outside(tmp_path, dest, tmp_path / "home"):
            code = main(["deid", str(inputs), str(dest), *key, "-o", "retain-uids"])
        captured = capsys.readouterr()
        assert code == 1
        report = _report(dest)
        assert report["files"] == {"total": 4, "ok": 1, "failed": 3, "skipped": 0}
        failures = report["failures"]
        assert isinstance(failures, list)
        for failure in failures:
            assert failure["reason"].startswith("SeriesInstanceUID is not a valid UID")
        for text in (captured.err, json.dumps(report)):
            assert "zqx" not in text and "zqy" not in text and "\x00" not in text
        assert list(_outputs(dest)) == [name for name in _outputs(dest) if name.count("/") == 3]


def _numeric_vr_name(target: Path) -> Path:
    """PatientName (and Modality) sent with VR FL and a length no float fits: pydicom's
    BytesLengthException quotes the value."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = "Quixote^D"
    ds.save_as(target)
    data = bytearray(target.read_bytes())
    for element in (b"PN\x0a\x00Quixote^D ", b"CS\x02\x00CT"):
        at = data.index(element)
        data[at : at + 2] = b"FL"  # 10 and 2 bytes: no whole number of floats
    target.write_bytes(bytes(data))
    return target


def _iso2022_name(target: Path) -> Path:
    """A PatientName that pydicom's ISO 2022 decoder fails on with an IndexError."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SpecificCharacterSet = "ISO 2022 IR 87"
    ds.save_as(target)
    data = bytearray(target.read_bytes())
    at = data.index(b"CompressedSamples^CT1")
    name = b"=\x1b$)CQuixote"
    name += b" " * (len(name) % 2)
    data[at - 2 : at] = struct.pack("<H", len(name))
    data[at : at + len("CompressedSamples^CT1") + 1] = name
    target.write_bytes(bytes(data))
    return target


def _value_as_tag(target: Path) -> Path:
    """The element before PatientName claims 8 more bytes: the reader lands on the name's
    value and sees ``Comp`` as a tag, (6F43,706D)."""
    data = bytearray(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    header = data.index(b"CompressedSamples^CT1") - 8
    assert data[header - 12 : header - 6] == b"\t\x00\xe9\x10SL"
    struct.pack_into("<H", data, header - 6, 12)
    target.write_bytes(bytes(data))
    return target


class TestForeignErrors:
    def test_one_file_never_ends_the_run_nor_quotes_a_value(
        self,
        tmp_path: Path,
        key: list[str],
        batch_home: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        inputs = tmp_path / "in"
        inputs.mkdir()
        _numeric_vr_name(inputs / "numeric.dcm")
        _iso2022_name(inputs / "iso2022.dcm")
        _value_as_tag(inputs / "tag.dcm")
        shutil.copy(get_testdata_file("MR_small.dcm"), inputs / "fine.dcm")
        dest = tmp_path / "out"
        for workers in ("1", "2"):  # in this process, and in worker processes
            code = main(["deid", str(inputs), str(dest / workers), *key, "-j", workers])
            assert code == 1
            report = _report(dest / workers)
            files = report["files"]
            assert isinstance(files, dict) and files["total"] == 4 and files["ok"] >= 1
            assert files["ok"] + files["failed"] == 4
        captured = capsys.readouterr()
        reasons = b"".join(p.read_bytes() for p in batch_home.rglob("reasons.json"))
        texts = (
            captured.err.encode(),
            captured.out.encode(),
            reasons,
            (dest / "1" / "dicomveil-report.json").read_bytes(),
            (dest / "2" / "dicomveil-report.json").read_bytes(),
        )
        for text in texts:
            for value in (b"Quixote", b"6F43", b"706D", b"Comp", b"Traceback"):
                assert value not in text
        assert b"the element at byte" in reasons  # said without the value as a tag


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


class TestSharedInstanceUid:
    #: Different files pydicom ships with one SOP Instance UID (seven have it).
    SHARED = (
        "SC_rgb_jpeg_gdcm.dcm",
        "SC_rgb_rle.dcm",
        "SC_rgb_rle_16bit.dcm",
        "SC_rgb_rle_2frame.dcm",
        "SC_rgb_rle_32bit.dcm",
    )

    def test_never_silently_lost_and_the_same_whatever_the_workers(
        self, tmp_path: Path, key: list[str], batch_home: Path
    ) -> None:
        inputs = tmp_path / "in"
        inputs.mkdir()
        for name in self.SHARED:
            shutil.copy(get_testdata_file(name), inputs / name)
        shutil.copy(get_testdata_file(self.SHARED[0]), inputs / "zz-copy.dcm")  # identical
        shutil.copy(get_testdata_file("CT_small.dcm"), inputs / "ct.dcm")
        total = len(self.SHARED) + 2
        results = []
        for workers in ("1", "2"):
            dest = tmp_path / f"out{workers}"
            assert main(["deid", str(inputs), str(dest), *key, "-j", workers]) == 1
            report = _report(dest)
            files = report["files"]
            assert isinstance(files, dict)
            outputs = _outputs(dest)
            assert report["duplicates"] == 1
            assert files["ok"] == len(outputs) == 2  # the first of the shared UID, and the CT
            assert files["failed"] == len(self.SHARED) - 1
            assert files["ok"] + files["failed"] + report["duplicates"] == total
            failures = report["failures"]
            assert isinstance(failures, list)
            results.append((outputs, sorted(f["input_sha256"] for f in failures)))
        assert results[0] == results[1]  # deterministic: the first input in order is kept
        kept = sorted(self.SHARED)[0]
        assert _sha(inputs / kept) not in results[0][1]


def test_batch_counts_a_duplicate_as_skipped(
    tmp_path: Path, batch_home: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in TestSharedInstanceUid.SHARED[:2]:
        shutil.copy(get_testdata_file(name), inputs / name)
    shutil.copy(get_testdata_file(TestSharedInstanceUid.SHARED[0]), inputs / "zz-copy.dcm")
    dest = tmp_path / "dest"
    argv = ["batch", str(inputs), "--dest", str(dest), "--key-file", str(key_file)]
    assert cli_main([*argv, "-j", "2", "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["inputs"]["uploaded"] == 1
    assert summary["inputs"]["failed"] == 1 and summary["inputs"]["skipped"] == 1


def test_every_pydicom_file_at_once(
    tmp_path: Path, key: list[str], batch_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every test file pydicom ships, in one run: no traceback, every input accounted for,
    the way back recorded for every output, the run closed in the audit log."""
    from dicomveil.audit import AuditLog
    from dicomveil.audit.events import DEID_RUN_END

    source = Path(get_testdata_file("CT_small.dcm")).parent
    dest = tmp_path / "out"
    with nothing_written_outside(tmp_path, dest, batch_home):
        code = main(["deid", str(source), str(dest), *key, "-j", "2", "--json"])
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    report = _report(dest)
    files = report["files"]
    assert isinstance(files, dict)
    assert files["total"] > 100
    duplicates = report["duplicates"]
    assert isinstance(duplicates, int)
    assert files["ok"] + files["failed"] + files["skipped"] + duplicates == files["total"]
    outputs = _outputs(dest)
    assert len(outputs) == files["ok"]  # nothing overwritten
    assert _vault_instances(capsys) == files["ok"]
    reasons = json.loads(next(batch_home.rglob("reasons.json")).read_text())
    assert len(reasons) == files["failed"]
    ends = [e for e in AuditLog.open(create=False).entries() if e.event == DEID_RUN_END]
    assert [e.details["run_id"] for e in ends] == [report["run_id"]]
