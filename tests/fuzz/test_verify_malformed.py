"""``verify`` on what the fuzz campaign met: undecodable originals, names of separators only.

The fuzz campaign found ``dicomveil verify`` ending with a traceback (``NotImplementedError``,
``BytesLengthException``) when an original held an element pydicom cannot decode: an unknown
VR, or a name sent under a numeric VR with a length that VR does not allow. Such files are the
ones most worth checking (the engine may have copied the element verbatim).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pydicom.datadict import keyword_for_tag

from dicomveil.pipeline.verify import verify_folders
from tests.fuzz.encoded import encode_element, layout
from tests.fuzz.mutator import GIVEN, PATIENT_ID_TAG, PATIENT_NAME, _start, bases

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _with_vr(data: bytes, tag: int, vr: bytes) -> bytes:
    element = layout(data).find(tag)
    assert element is not None
    value = data[element.value_at : element.end]
    encoded = encode_element(tag, vr, value, implicit=False)
    return data[: element.start] + encoded + data[element.end :]


@pytest.mark.parametrize(
    ("tag", "vr"),
    [
        (PATIENT_NAME, b"FD"),  # 20 bytes under FD: not a multiple of 8
        (PATIENT_ID_TAG, b"ZZ"),  # no such VR
    ],
    ids=["name-as-FD", "id-unknown-VR"],
)
def test_undecodable_value_is_looked_for(tmp_path: Path, tag: int, vr: bytes) -> None:
    base = next(b for b in bases() if b.label == "test_files/CT_small.dcm")
    data = _with_vr(_start(random.Random(1), base), tag, vr)
    originals, outputs = tmp_path / "originals", tmp_path / "outputs"
    originals.mkdir()
    outputs.mkdir()
    (originals / "in.dcm").write_bytes(data)
    (outputs / "out.dcm").write_bytes(data)  # the worst output: nothing removed
    result = verify_folders(originals, outputs)
    assert result.originals == 1
    found = {leak.attribute for leak in result.leaks}  # no traceback, and:
    assert keyword_for_tag(tag) in found  # the undecodable element's value is looked for
    assert GIVEN not in repr(result.leaks)


def test_name_of_separators_only_is_no_needle(tmp_path: Path) -> None:
    """pydicom's chrArab.dcm has a Referring Physician's Name of ``^^^^``: no name at all.
    Found as text in another output (an Image Comments of ``^^^^``), it is no leak."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    original = Dataset()
    original.ReferringPhysicianName = "^^^^"
    original.PatientName = f"{GIVEN}^X"
    output = Dataset()
    output.ImageComments = "^^^^"
    for folder, ds in (("originals", original), ("outputs", output)):
        (tmp_path / folder).mkdir()
        ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(tmp_path / folder / "f.dcm", enforce_file_format=True)
    result = verify_folders(tmp_path / "originals", tmp_path / "outputs")
    assert result.originals == 1 and result.needles > 0
    assert result.leaks == []


@pytest.mark.slow
def test_deflate_bomb_original_costs_bounded_memory(tmp_path: Path) -> None:
    """A deflated original of a few hundred KiB that inflates to 512 MiB: pydicom alone
    inflated all of it (2 GB of RSS and 37 s for 1 GiB); read as ``deid`` reads it, the
    header limit bounds it."""
    from tests.fuzz.campaign import child_environment, dicomveil_command, run_child
    from tests.fuzz.mutator import deflate_bomb

    base = next(b for b in bases() if b.label == "test_files/CT_small.dcm")
    rng = random.Random(3)
    made = None
    while made is None or not made[0].startswith("padding:512"):
        made = deflate_bomb(rng, _start(rng, base), scale=2)
    originals, outputs = tmp_path / "originals", tmp_path / "outputs"
    originals.mkdir()
    outputs.mkdir()
    (originals / "bomb.dcm").write_bytes(made[1])
    (outputs / "out.dcm").write_bytes(base.raw)
    finished = run_child(
        dicomveil_command("verify", originals, outputs),
        env=child_environment(tmp_path / "home"),
        cwd=tmp_path,
        timeout=120,
    )
    assert finished.code in (0, 1), finished.stderr[-2000:]
    assert "Traceback" not in finished.stderr
    assert finished.max_rss_kib < 600 * 1024


def test_undecodable_number_is_passed_over(tmp_path: Path) -> None:
    """An element of unknown VR whose dictionary VR is a number (Slice Thickness, DS) and
    whose bytes are no number (a NUL inside): it identifies nobody and never ends the check
    (the campaign's long run met it: ``could not convert string to float``)."""
    from tests.fuzz.encoded import set_value

    base = next(b for b in bases() if b.label == "test_files/CT_small.dcm")
    data = set_value(_start(random.Random(4), base), 0x00180050, b"6.36977e+01\0", b"DS")
    data = _with_vr(data, 0x00180050, b"ZZ")
    originals, outputs = tmp_path / "originals", tmp_path / "outputs"
    originals.mkdir()
    outputs.mkdir()
    (originals / "in.dcm").write_bytes(data)
    (outputs / "out.dcm").write_bytes(base.raw)
    result = verify_folders(originals, outputs)
    assert result.originals == 1


def test_short_uid_inside_a_longer_one_is_no_leak(tmp_path: Path) -> None:
    """A hostile Study Instance UID ``1.2.3\\1.2.4`` (two short values): ``1.2.4`` is in the
    middle of JPEG Baseline's transfer syntax ``1.2.840.10008.1.2.4.50`` of another output,
    which is no leak; the same value as the prefix of an output's UID still is."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import JPEGBaseline8Bit, SecondaryCaptureImageStorage

    def save(ds: Dataset, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.SOPClassUID = SecondaryCaptureImageStorage
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.save_as(path, enforce_file_format=True)

    original = Dataset()
    original.SOPInstanceUID = "2.25.1"
    original.StudyInstanceUID = ["1.2.3", "1.2.4"]
    save(original, tmp_path / "originals" / "f.dcm")
    output = Dataset()
    output.SOPInstanceUID = "2.25.2"
    save(output, tmp_path / "outputs" / "f.dcm")
    assert verify_folders(tmp_path / "originals", tmp_path / "outputs").leaks == []
    output.SeriesInstanceUID = "1.2.4.99"  # the original value, extended: a leak
    save(output, tmp_path / "outputs" / "f.dcm")
    assert verify_folders(tmp_path / "originals", tmp_path / "outputs").leaks


@pytest.mark.slow
def test_long_text_original_does_not_crash(tmp_path: Path) -> None:
    """The long campaign's mutant ``long-text`` (seed 1, index 18, scale 2: Image Comments
    of 400 kB of ``@.``) became needles of up to 800 kB, and the Aho-Corasick automaton
    crashed ``verify`` with a segmentation fault. A long value is searched by its head."""
    from tests.fuzz.campaign import child_environment, dicomveil_command, run_child
    from tests.fuzz.mutator import mutant

    made = mutant(1, 18, bomb_scale=2)
    assert made.kind == "long-text"
    originals, outputs = tmp_path / "originals", tmp_path / "outputs"
    originals.mkdir()
    outputs.mkdir()
    (originals / "in.dcm").write_bytes(made.data)
    (outputs / "out.dcm").write_bytes(made.data)  # nothing removed: the comment is found
    finished = run_child(
        dicomveil_command("verify", originals, outputs, "--json"),
        env=child_environment(tmp_path / "home"),
        cwd=tmp_path,
        timeout=120,
    )
    assert finished.code == 1, (finished.code, finished.stderr[-1000:])
    assert '"ImageComments"' in finished.stdout
