"""The way back, end to end: deid records into the vault, reidentify returns the originals,
a returned report is mapped back, and several processes share one vault and audit log."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicomveil.cli.main import main
from dicomveil.demo import write_demo_study

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _originals(folder: Path) -> dict[str, dict[str, str]]:
    """Original study identity by StudyInstanceUID, read from the input files."""
    found: dict[str, dict[str, str]] = {}
    for path in folder.rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        found[ds.StudyInstanceUID] = {
            "PatientID": ds.PatientID,
            "PatientName": str(ds.PatientName),
            "AccessionNumber": ds.AccessionNumber,
            "StudyDate": ds.StudyDate,
        }
    return found


def test_every_study_comes_back(
    demo_study: Path, tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "out"
    assert main(["deid", str(demo_study), str(dest), "--key-file", str(key_file)]) == 0
    expected = _originals(demo_study)
    studies = {p.name for p in dest.glob("*/*") if p.is_dir()}
    assert len(studies) == len(expected) == 3
    capsys.readouterr()
    for study in studies:
        code = main(["reidentify", "--study", study, "--purpose", "report return", "--json"])
        assert code == 0
        answer = json.loads(capsys.readouterr().out)
        [match] = answer["studies"]
        original = match["original"]
        want = expected[original["StudyInstanceUID"]]
        assert {k: original[k] for k in want} == want
    # unknown pseudonym, missing purpose: refused, exit 1
    assert main(["reidentify", "--study", "SNOTAREALSTUDY00", "--purpose", "x"]) == 1
    assert main(["reidentify", "--study", next(iter(studies))]) in (1, 2)
    assert main(["audit", "verify"]) == 0


def _report_on(deidentified: Path) -> Dataset:
    """A Basic Text SR a remote reader made on a de-identified image."""
    image = pydicom.dcmread(deidentified, stop_before_pixels=True)
    sr = Dataset()
    sr.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    sr.SOPInstanceUID = generate_uid()
    sr.SeriesInstanceUID = generate_uid()
    sr.StudyInstanceUID = image.StudyInstanceUID
    sr.PatientID, sr.PatientName = image.PatientID, image.PatientName
    sr.AccessionNumber = image.AccessionNumber
    sr.Modality = "SR"
    ref = Dataset()
    ref.ReferencedSOPClassUID = image.SOPClassUID
    ref.ReferencedSOPInstanceUID = image.SOPInstanceUID
    item = Dataset()
    item.ValueType = "IMAGE"
    item.ReferencedSOPSequence = Sequence([ref])
    sr.ContentSequence = Sequence([item])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sr.SOPClassUID
    meta.MediaStorageSOPInstanceUID = sr.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr.file_meta = meta
    return sr


def _returned(dataset: Dataset, folder: Path, purpose: str) -> Dataset:
    """Save ``dataset`` as a returned file, re-identify it with the CLI, read the result."""
    returned, restored = folder / "returned.dcm", folder / "restored.dcm"
    dataset.save_as(returned, enforce_file_format=True)
    code = main(["reidentify", "--dicom", str(returned), "--out", str(restored),
                 "--purpose", purpose])  # fmt: skip
    assert code == 0
    return pydicom.dcmread(restored)


def test_returned_report_is_mapped_back(demo_study: Path, tmp_path: Path, key_file: Path) -> None:
    dest = tmp_path / "out"
    main(["deid", str(demo_study), str(dest), "--key-file", str(key_file)])
    deidentified = next(dest.rglob("*.dcm"))
    report = _report_on(deidentified)
    back = _returned(report, tmp_path, "import report")
    originals = {
        pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p
        for p in demo_study.rglob("*.dcm")
    }
    ref = back.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    assert ref in originals  # points at the hospital's own image again
    source = pydicom.dcmread(originals[ref], stop_before_pixels=True)
    assert back.StudyInstanceUID == source.StudyInstanceUID
    assert back.PatientID == source.PatientID
    assert back.SOPInstanceUID == report.SOPInstanceUID  # the reader's new UID stays new


def _segmentation_on(deidentified: Path) -> Dataset:
    """What a remote AI service returns: a segmentation in the image's frame of reference,
    referring to the image's series and instance (only the parts the way back reads)."""
    image = pydicom.dcmread(deidentified, stop_before_pixels=True)
    seg = _report_on(deidentified)
    seg.SOPClassUID = seg.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
    seg.Modality = "SEG"
    del seg.ContentSequence
    seg.FrameOfReferenceUID = image.FrameOfReferenceUID
    instance = Dataset()
    instance.ReferencedSOPClassUID = image.SOPClassUID
    instance.ReferencedSOPInstanceUID = image.SOPInstanceUID
    referenced = Dataset()
    referenced.SeriesInstanceUID = image.SeriesInstanceUID
    referenced.ReferencedInstanceSequence = Sequence([instance])
    seg.ReferencedSeriesSequence = Sequence([referenced])
    return seg


def test_returned_segmentation_overlays_the_original_images(
    demo_study: Path, tmp_path: Path, key_file: Path
) -> None:
    """Frame of reference, series and instance references all point at the originals."""
    dest = tmp_path / "out"
    assert main(["deid", str(demo_study), str(dest), "--key-file", str(key_file)]) == 0
    deidentified = next(dest.rglob("*.dcm"))
    seg = _segmentation_on(deidentified)
    back = _returned(seg, tmp_path, "import segmentation")
    referenced = back.ReferencedSeriesSequence[0]
    image_uid = referenced.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
    sources = {
        ds.SOPInstanceUID: ds
        for ds in (pydicom.dcmread(p, stop_before_pixels=True) for p in demo_study.rglob("*.dcm"))
    }
    source = sources[image_uid]
    assert source.FrameOfReferenceUID != seg.FrameOfReferenceUID  # it was pseudonymous
    assert back.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert referenced.SeriesInstanceUID == source.SeriesInstanceUID
    assert back.StudyInstanceUID == source.StudyInstanceUID


def _deid_worker(args: tuple[str, str, str]) -> int:
    source, dest, key = args
    return main(["deid", source, dest, "--key-file", key, "-j", "1"])


def test_four_processes_share_one_vault_and_audit_log(
    tmp_path: Path, key_file: Path, state_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = []
    for index in range(4):
        source = tmp_path / f"in{index}"
        write_demo_study(source, patients=1, images_per_series=3, seed=index + 1)
        jobs.append((str(source), str(tmp_path / f"out{index}"), str(key_file)))
    # create the keys first so the four processes do not race to create them
    assert main(["keys", "init"]) == 0
    # spawn, not fork: a fork copies whatever threads earlier tests in this process left
    # (recording and audit threads) in whatever lock state they held: the children hung
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        assert pool.map(_deid_worker, jobs) == [0, 0, 0, 0]
    assert main(["audit", "verify"]) == 0
    capsys.readouterr()
    assert main(["vault", "stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["instances"] == 4 * 6
