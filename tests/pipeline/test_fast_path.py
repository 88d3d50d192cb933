"""The byte-level fast path against the reference path: same bytes, counts, flags, identity.

:func:`~dicomveil.pipeline.files.deidentify_file` de-identifies most instances without pydicom
objects (:mod:`dicomveil.engine.encoded`) and hands the rest to the reference engine and
writer. Both must give the same output for every input and policy: these tests run every file
both ways and compare everything, and check that the fast path is really taken where it should
be.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from dicomveil.demo import write_demo_study
from dicomveil.engine._encoding import dummy_bytes, method_elements
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.rules import compile_policy
from dicomveil.engine.values import dummy_value
from dicomveil.pipeline import files
from dicomveil.pipeline.files import FileOutcome, deidentify_file
from dicomveil.profile.policy import Override, OverrideAction, Policy, PrivateRule
from tests.pipeline.fast_cases import write_cases

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

KEYS = PseudonymKeys(b"fast-path-test-secret-0123456789")
PYDICOM_DATA = Path(pydicom.data.__file__).parent
PYDICOM_FILES = sorted(
    path
    for path in [
        *(PYDICOM_DATA / "test_files").rglob("*"),
        *(PYDICOM_DATA / "charset_files").glob("*.dcm"),
    ]
    if path.is_file()
)

POLICIES = {
    "basic": Policy(),
    "burned-in-allowed": Policy(allow_burned_in_annotation=True),
    "retain-uids": Policy.from_names(["retain-uids"]),
    "full-dates": Policy.from_names(["retain-longitudinal-full-dates"]),
    "institution": Policy.from_names(["retain-institution-identity"]),
    # options whose rules can clean text: fast until an element to clean is met
    "retain-more": Policy.from_names(
        ["retain-device-identity", "retain-institution-identity", "retain-patient-characteristics"]
    ),
    "safe-private": Policy.from_names(["retain-safe-private"]),
    "clean-descriptors": Policy.from_names(["clean-descriptors"]),
    "clean-content": Policy.from_names(["clean-structured-content", "clean-graphics"]),
    "overrides": Policy(
        overrides={
            0x00101010: Override(OverrideAction.KEEP),  # Patient's Age
            0x00080080: Override(OverrideAction.REMOVE),  # Institution Name
            0x00081010: Override(OverrideAction.EMPTY),  # Station Name
            0x00100020: Override(OverrideAction.KEEP),  # Patient ID kept, Patient's Name not
        },
        private_rules=(
            PrivateRule("SYNTHETIC PRIVATE", OverrideAction.KEEP),
            PrivateRule("OTHER VENDOR", OverrideAction.KEEP),
        ),
        organization="ORG1",
        allow_burned_in_annotation=True,
    ),
    "modified-dates": Policy.from_names(["retain-longitudinal-modified-dates"]),
}


def _both(source: Path, root: Path, policy: Policy) -> tuple[FileOutcome, FileOutcome, bool]:
    """De-identify ``source`` the reference way and the fast way; report if fast was taken."""
    compiled = compile_policy(policy)
    reference = deidentify_file(source, root / "reference", compiled, KEYS, fast=False)
    taken: list[bool] = []
    fast = files._fast

    def spy(*args: object) -> FileOutcome | None:
        outcome = fast(*args)  # type: ignore[arg-type]
        taken.append(outcome is not None)
        return outcome

    files._fast = spy  # type: ignore[assignment]
    try:
        quick = deidentify_file(source, root / "fast", compile_policy(policy), KEYS)
    finally:
        files._fast = fast
    return reference, quick, bool(taken and taken[0])


def _same(reference: FileOutcome, quick: FileOutcome, root: Path) -> None:
    fields = ("status", "output", "reason", "size", "operations", "flags", "modality", "identity")
    for name in fields:
        assert getattr(quick, name) == getattr(reference, name), name
    if reference.status == "ok":
        expected = (root / "reference" / reference.output).read_bytes()
        assert (root / "fast" / quick.output).read_bytes() == expected


def _run(paths: list[Path], root: Path, policy: Policy) -> int:
    taken = 0
    for index, source in enumerate(paths):
        folder = root / str(index)
        reference, quick, fast = _both(source, folder, policy)
        try:
            _same(reference, quick, folder)
        except AssertionError as exc:
            raise AssertionError(f"{source.name}: {exc}") from exc
        taken += fast
    return taken


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_cases(tmp_path_factory.mktemp("fast-cases"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("fast-demo")
    return write_demo_study(folder, patients=2, series_per_study=2, images_per_series=2)


NEVER_FAST: tuple[str, ...] = ()


@pytest.mark.parametrize("policy", list(POLICIES), ids=list(POLICIES))
class TestSameAsReference:
    def test_probing_cases(self, policy: str, cases: list[Path], tmp_path: Path) -> None:
        taken = _run(cases, tmp_path, POLICIES[policy])
        if policy not in NEVER_FAST:
            assert taken >= len(cases) // 2  # most cases are the fast path's to handle

    def test_pydicom_files(self, policy: str, tmp_path: Path) -> None:
        taken = _run(PYDICOM_FILES, tmp_path, POLICIES[policy])
        if policy == "basic":
            assert taken > 60

    def test_demo_study(self, policy: str, demo: list[Path], tmp_path: Path) -> None:
        taken = _run(demo, tmp_path, POLICIES[policy])
        if policy not in NEVER_FAST:
            assert taken == len(demo)


def test_worker_counts_give_the_same_tree(demo: list[Path], tmp_path: Path) -> None:
    """Pseudonyms are remembered per process: a second pass gives the same bytes."""
    compiled = compile_policy(Policy())
    for run in ("a", "b"):
        for source in [*demo, *reversed(demo)]:
            assert deidentify_file(source, tmp_path / run, compiled, KEYS).status == "ok"
    left = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.dcm"))
    right = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.dcm"))
    assert left == right
    for name in left:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


class TestEncodings:
    """The values the fast path encodes itself, against the reference writer."""

    @pytest.mark.parametrize(
        "vr",
        ["AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC",
         "UR", "UT", "FL", "FD", "SL", "SS", "UL", "US", "SV", "UV", "OB", "OW", "UN", "AT"],
    )  # fmt: skip
    def test_dummy_values(self, vr: str) -> None:
        from pydicom import config
        from pydicom.dataelem import DataElement
        from pydicom.dataset import Dataset

        from dicomveil.dicomio._encode import Parts, encode_elements, sorted_tags

        ds = Dataset()
        ds._dict[pydicom.tag.BaseTag(0x00091010)] = DataElement(
            0x00091010, vr, dummy_value(vr), validation_mode=config.IGNORE
        )
        parts = Parts()
        encode_elements(ds, sorted_tags(ds), False, True, parts)
        encoded = b"".join(p for p in parts.finish() if isinstance(p, bytes))
        header = 12 if vr in ("OB", "OW", "UN", "UC", "UR", "UT", "UV", "SV") else 8
        assert encoded[header:] == dummy_bytes(vr)

    @pytest.mark.parametrize("implicit", [False, True])
    @pytest.mark.parametrize("options", [[], ["retain-uids", "clean-graphics"]])
    def test_method_attributes(self, implicit: bool, options: list[str]) -> None:
        from pydicom.dataset import Dataset

        from dicomveil.dicomio._encode import Parts, encode_elements, sorted_tags
        from dicomveil.engine.method import add_method_attributes

        policy = Policy.from_names(options)
        ds = Dataset()
        add_method_attributes(ds, policy, "remove")
        parts = Parts()
        encode_elements(ds, sorted_tags(ds), implicit, True, parts)
        expected = b"".join(p for p in parts.finish() if isinstance(p, bytes))
        ours = b"".join(data for _, data in method_elements(policy, "remove", implicit))
        assert ours == expected


def test_text_is_cleaned_on_the_fast_path(demo: list[Path], tmp_path: Path) -> None:
    """Under a cleaning option the fast path collects the instance's identifying values and
    cleans its text, byte for byte as the reference does; text that stays non-ASCII once
    cleaned is left to the reference writer."""
    policy = POLICIES["clean-descriptors"]
    ds = pydicom.dcmread(demo[0])
    family = str(ds.PatientName).split("^")[0]
    ds.SeriesDescription = f"CT chest for {family}"
    planted = tmp_path / "planted.dcm"
    ds.save_as(planted)
    reference, quick, fast = _both(planted, tmp_path / "ascii", policy)
    assert fast
    _same(reference, quick, tmp_path / "ascii")
    out = pydicom.dcmread(tmp_path / "ascii" / "fast" / quick.output)
    assert out.SeriesDescription.startswith("CT chest for") and family not in str(out)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SeriesDescription = f"Thorax für {family}"
    ds.save_as(planted)
    reference, quick, fast = _both(planted, tmp_path / "latin1", policy)
    assert not fast
    _same(reference, quick, tmp_path / "latin1")


def test_dates_are_shifted_on_the_fast_path(cases: list[Path], tmp_path: Path) -> None:
    """Modified dates: shifted dates in every form take the fast path (same bytes as the
    reference); an unparseable date, which the reference removes with a flag, does not."""
    policy = POLICIES["modified-dates"]
    for source in cases:
        if source.stem.startswith(("dates", "unparseable-date")):
            reference, quick, fast = _both(source, tmp_path / source.stem, policy)
            _same(reference, quick, tmp_path / source.stem)
            assert fast is source.stem.startswith("dates"), source.stem
            if fast:
                out = pydicom.dcmread(tmp_path / source.stem / "fast" / quick.output)
                assert out.ContentDate[0] != "20210304" and out.ContentDate[1] == ""
                nested = out.ReferencedImageSequence[0].PerformedProcedureStepStartDate
                assert nested and nested != "20210303"


def _defined_length_report(path: Path, items: int, text: int) -> Path:
    """A structured report whose Content Sequence and items have defined lengths (as some
    writers send them), with long text: its header runs past the first reads."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.22"
    ds.SOPInstanceUID, ds.StudyInstanceUID = (
        "1.2.826.0.1.3680043.99.8.1.1",
        "1.2.826.0.1.3680043.99.8",
    )
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.99.8.1"
    ds.PatientName, ds.PatientID, ds.Modality = "DOE^JANE", "PID8", "SR"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    head = DicomBytesIO()
    ds.save_as(head, enforce_file_format=True)
    encoded = bytearray()
    for number in range(items):
        item = Dataset()
        item.RelationshipType, item.ValueType = "CONTAINS", "TEXT"
        item.TextValue = f"finding {number} for DOE " + "x" * text
        body = DicomBytesIO()
        body.is_little_endian, body.is_implicit_VR = True, False
        write_dataset(body, item)
        encoded += struct.pack("<HHL", 0xFFFE, 0xE000, len(body.getvalue())) + body.getvalue()
    sequence = struct.pack("<HH2sHL", 0x0040, 0xA730, b"SQ", 0, len(encoded)) + encoded
    path.write_bytes(head.getvalue() + sequence)
    return path


def test_a_large_defined_length_sequence_takes_the_fast_path(tmp_path: Path) -> None:
    """Sequences are never deferred: one of several MB (here 4.4 MB, in a header longer than
    the first reads) is walked like any other, with the reference output."""
    source = _defined_length_report(tmp_path / "sr.dcm", items=4200, text=1000)
    assert source.stat().st_size > 4 * 1024 * 1024
    reference, quick, fast = _both(source, tmp_path / "out", POLICIES["basic"])
    assert fast
    _same(reference, quick, tmp_path / "out")
    assert b"DOE" not in (tmp_path / "out" / "fast" / quick.output).read_bytes()


POOL_SCRIPT = """
import sys
from pathlib import Path
from dicomveil.pipeline.run import run_deidentification
from dicomveil.profile.policy import Policy
assert "pydicom" not in sys.modules  # the workers import it, without pixel codecs
sources = [Path(line) for line in Path(sys.argv[1]).read_text().splitlines()]
policy = Policy(allow_burned_in_annotation=True)
summary = run_deidentification(sources, Path(sys.argv[2]), policy, b"x" * 32, workers=2)
assert summary.total == len(sources)
"""


def test_pool_workers_give_the_same_outputs(tmp_path: Path) -> None:
    """Pool workers import pydicom without its pixel codecs; every output is the same as in
    this process, reference path included (the pydicom files that need it)."""
    import subprocess
    import sys

    from dicomveil.pipeline.run import run_deidentification

    compiled = compile_policy(Policy(allow_burned_in_annotation=True))
    outputs: dict[str, list[Path]] = {}
    for source in PYDICOM_FILES[:100]:  # several share a SOP Instance UID: one of each
        outcome = deidentify_file(source, tmp_path / "probe", compiled, KEYS)
        outputs.setdefault(outcome.output or str(source), []).append(source)
    sources = [paths[0] for paths in outputs.values()]
    listing = tmp_path / "sources.txt"
    listing.write_text("\n".join(str(path) for path in sources))
    done = subprocess.run(
        [sys.executable, "-c", POOL_SCRIPT, str(listing), str(tmp_path / "pool")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    policy = Policy(allow_burned_in_annotation=True)
    run_deidentification(sources, tmp_path / "here", policy, b"x" * 32, workers=1)
    folders = [
        {path.relative_to(dest): path.read_bytes() for path in dest.rglob("*.dcm")}
        for dest in (tmp_path / "here", tmp_path / "pool")
    ]
    assert folders[0] == folders[1]
    assert len(folders[0]) > 40
