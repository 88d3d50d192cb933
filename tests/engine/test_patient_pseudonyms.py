"""PatientID and PatientName of one patient get one pseudonym, whichever is empty.

PatientName precedes PatientID in a dataset, so it is replaced first; the patient of a level
must be judged by the level's original values, or an empty PatientID is keyed from the
already-replaced name and the two elements name two different patients.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomveil.profile.policy import Policy
from tests.pipeline.test_fast_path import _both, _same

CASES = [
    ("", "DOE^JOHN"),
    ("   ", "DOE^JOHN"),
    ("", ""),
    ("MRN123", ""),
    ("MRN123", "DOE^JOHN"),
]


def _write(folder: Path, index: int, patient_id: str, name: str, *, nested: bool) -> Path:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientID, ds.PatientName = patient_id, name
    if nested:  # another patient named in an item, without an ID
        item = Dataset()
        item.PatientName, item.PatientID = "ROE^RICHARD", ""
        ds.SourcePatientGroupIdentificationSequence = Sequence([item])
    path = folder / f"{index}.dcm"
    ds.save_as(path)
    return path


@pytest.mark.parametrize(("patient_id", "name"), CASES)
def test_id_and_name_share_the_patient_pseudonym(
    patient_id: str, name: str, tmp_path: Path
) -> None:
    source = _write(tmp_path, 0, patient_id, name, nested=False)
    reference, quick, _ = _both(source, tmp_path / "out", Policy())
    _same(reference, quick, tmp_path / "out")
    out = pydicom.dcmread(tmp_path / "out" / "reference" / str(reference.output))
    assert out.PatientID == str(out.PatientName) != ""
    assert reference.identity is not None
    assert reference.identity.pseudonymous.patient_id == out.PatientID


def test_a_nested_patient_without_id_is_one_patient_too(tmp_path: Path) -> None:
    source = _write(tmp_path, 0, "", "DOE^JOHN", nested=True)
    reference, quick, _ = _both(source, tmp_path / "out", Policy())
    _same(reference, quick, tmp_path / "out")
    data = (tmp_path / "out" / "reference" / str(reference.output)).read_bytes()
    assert b"ROE" not in data and b"DOE" not in data
    out = pydicom.dcmread(tmp_path / "out" / "reference" / str(reference.output))
    item = out.get("SourcePatientGroupIdentificationSequence")
    if item:  # kept by the policy: its patient is named consistently, and not the top one
        assert item[0].PatientID == str(item[0].PatientName) != out.PatientID


def test_same_patient_same_pseudonym_whichever_element_is_empty(tmp_path: Path) -> None:
    """An instance with only the name and one with name and an empty ID: same patient."""
    first = _write(tmp_path, 1, "", "DOE^JOHN", nested=False)
    second = _write(tmp_path, 2, "  ", "DOE^JOHN", nested=False)
    a, _, _ = _both(first, tmp_path / "a", Policy())
    b, _, _ = _both(second, tmp_path / "b", Policy())
    assert a.identity is not None and b.identity is not None
    assert a.identity.pseudonymous.patient_id == b.identity.pseudonymous.patient_id
