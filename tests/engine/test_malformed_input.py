"""Inputs no well-behaved writer produces, written byte by byte: wrong VRs, numbers of the
wrong length, names with NUL bytes, invalid UTF-8 or stray ISO 2022 escapes, names in a
character set pydicom cannot decode.

Each was found by a fuzz campaign to leak a value, crash the engine with a pydicom exception
that quotes the patient's name, or give an output pydicom cannot read. Every file is
de-identified by both paths (the byte-level fast path and the reference), which must agree,
and the output bytes are searched for the planted values.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pydicom
import pytest
from pydicom.datadict import tag_for_keyword

from dicomveil.dicomio import read_instance
from dicomveil.engine.deidentify import deidentify
from dicomveil.engine.encoded import deidentify_encoded
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.rules import compile_policy
from dicomveil.errors import DicomveilError, MalformedInputError
from dicomveil.pipeline.files import FileOutcome
from dicomveil.profile.policy import OverrideAction, Policy, PrivateRule
from tests.engine.rawfile import base_elements, encode, item, raw_file, text
from tests.pipeline.test_fast_path import _both, _same

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

KEYS = PseudonymKeys(b"malformed-input-secret-0123456789")
SECRETS = (b"QUIXOTE", b"Quixote", b"quixote", b"ZEBULON", b"Zebulon", b"zebulon")
BASIC = Policy()
CLEAN = Policy.from_names(["clean-descriptors"])
INSTITUTION = Policy.from_names(["retain-institution-identity"])

COMMENTS = tag_for_keyword("CommentsOnTheScheduledProcedureStep")  # LT
STEPS = tag_for_keyword("ScheduledProcedureStepSequence")
REVIEWER = tag_for_keyword("SecondaryReviewerName")  # PN
OPERATORS = tag_for_keyword("OperatorsName")  # PN
INSTITUTION_NAME = tag_for_keyword("InstitutionName")  # LO
STUDY_DESCRIPTION = tag_for_keyword("StudyDescription")  # LO
PATIENT_NAME = tag_for_keyword("PatientName")
MODALITY = tag_for_keyword("Modality")
ROWS = tag_for_keyword("Rows")
CHARSET = tag_for_keyword("SpecificCharacterSet")
FINDING = text("Quixote Zebulon is claustrophobic")


def _run(path: Path, root: Path, policy: Policy) -> FileOutcome:
    """De-identify ``path`` both ways; they must agree. Return the reference outcome."""
    reference, quick, _ = _both(path, root, policy)
    _same(reference, quick, root)
    return reference


def _output(root: Path, outcome: FileOutcome) -> bytes:
    assert outcome.status == "ok", outcome.reason
    return (root / "reference" / str(outcome.output)).read_bytes()


def _leaks(data: bytes) -> list[bytes]:
    return [secret for secret in SECRETS if secret in data]


def _readable(data: bytes) -> pydicom.Dataset:
    """The output read by pydicom, every element converted (none may fail)."""
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    for elem in ds.iterall():
        _ = elem.value
    return ds


MISLABELLED = {
    # the cases: text outside Table E.1-1 judged by the file's VR was kept
    "comments-as-LO": {COMMENTS: (b"LO", FINDING)},
    "comments-as-OB": {COMMENTS: (b"OB", FINDING)},
    "comments-as-SH-nested": {STEPS: (b"SQ", item([(COMMENTS, b"SH", text("Quixote Zebulon"))]))},
    "reviewer-as-SH": {REVIEWER: (b"SH", text("Quixote^Zebulon"))},
    "operator-as-UT": {OPERATORS: (b"UT", text("Quixote^Zebulon"))},
    "operator-as-US": {OPERATORS: (b"US", text("Quixote^Zebulon"))},
    "name-as-FD": {PATIENT_NAME: (b"FD", text("QUIXOTE^ZEBULON1"))},
    "name-as-US-odd": {PATIENT_NAME: (b"US", b"QUIXOTE^ZEBULON")},
    "name-as-SQ": {PATIENT_NAME: (b"SQ", item([(OPERATORS, b"PN", text("Quixote^Zebulon"))]))},
}


@pytest.mark.parametrize("policy", [BASIC, CLEAN], ids=["basic", "clean-descriptors"])
@pytest.mark.parametrize("case", list(MISLABELLED))
def test_a_mislabelled_vr_is_judged_by_the_dictionary(
    case: str, policy: Policy, tmp_path: Path
) -> None:
    """Each planted value is removed or cleaned as its dictionary VR requires; the paths
    agree; the output is readable by pydicom, every element with its dictionary VR."""
    elements = base_elements()
    elements[STUDY_DESCRIPTION] = (b"LO", text("Study of Quixote Zebulon"))
    elements.update(MISLABELLED[case])
    outcome = _run(raw_file(tmp_path / "in.dcm", elements), tmp_path, policy)
    data = _output(tmp_path, outcome)
    assert _leaks(data) == []
    ds = _readable(data)
    for elem in ds.iterall():
        assert elem.VR in pydicom.datadict.dictionary_VR(elem.tag).split(" or ") or (
            elem.tag.is_private
        ), elem.keyword
    assert any("value representation" in flag or "emptied" in flag for flag in outcome.flags)


def test_a_retained_mislabelled_value_is_written_with_its_dictionary_vr(
    tmp_path: Path,
) -> None:
    """InstitutionName sent as FD, kept by retain-institution-identity: kept as text, as
    LO (the output pydicom could not read before)."""
    elements = base_elements()
    elements[INSTITUTION_NAME] = (b"FD", text("Mancha General"))
    outcome = _run(raw_file(tmp_path / "in.dcm", elements), tmp_path, INSTITUTION)
    ds = _readable(_output(tmp_path, outcome))
    assert ds["InstitutionName"].VR == "LO"
    assert ds.InstitutionName == "Mancha General"


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_numbers_of_the_wrong_length_are_emptied(implicit: bool, tmp_path: Path) -> None:
    """Rows of 3 bytes: pydicom cannot read it (and its message quotes the bytes): emptied,
    flagged, the same on both paths."""
    elements = base_elements()
    elements[ROWS] = (b"US", b"\x01\x02\x03")
    outcome = _run(raw_file(tmp_path / "in.dcm", elements, implicit=implicit), tmp_path, BASIC)
    ds = _readable(_output(tmp_path, outcome))
    assert ds.Rows is None
    assert "Rows: value not readable as US: emptied" in outcome.flags


def test_a_numeric_vr_on_modality_is_read_as_text(tmp_path: Path) -> None:
    """Modality sent as US with 3 bytes gave a BytesLengthException quoting the value:
    the engine reads it as CS."""
    elements = base_elements()
    elements[MODALITY] = (b"US", b"CT ")
    instance = read_instance(raw_file(tmp_path / "in.dcm", elements))
    result = deidentify(instance.dataset, BASIC, KEYS)
    assert result.dataset.Modality == "CT"
    assert result.dataset["Modality"].VR == "CS"


MALFORMED_NAMES = {
    "nul": (b"ISO_IR 100", b"QUIXOTE\0ZEBULON "),
    "trailing-nuls": (b"ISO_IR 100", b"QUIXOTE^ZEBULON\0"),
    "invalid-utf8": (b"ISO_IR 192", b"QUIXOTE\xff^ZEBULON"),
    "invalid-utf8-inside": (b"ISO_IR 192", b"QUIX\xc3OTE^ZEBULON "),
    "stray-escape": (b"ISO_IR 100", b"QUIXOTE\x1b(B^ZEBULON"),
    "stray-escape-glued": (b"ISO_IR 100", b"QUIXOTE^\x1b$BZEBULON "),
    "controls": (b"ISO_IR 100", b"QUIXOTE\x07\tZEBULON "),
    "multi-valued": (b"ISO_IR 100", b"DOE^JOHN\\QUIXOTE^ZEBULON "),
}


@pytest.mark.parametrize("case", list(MALFORMED_NAMES))
def test_a_malformed_name_is_still_cleaned_from_descriptions(case: str, tmp_path: Path) -> None:
    """'Study of Quixote Zebulon' survived in StudyDescription when the name was mutated."""
    charset, name = MALFORMED_NAMES[case]
    elements = base_elements()
    elements[CHARSET] = (b"CS", charset + b" " * (len(charset) & 1))
    elements[PATIENT_NAME] = (b"PN", name)
    elements[STUDY_DESCRIPTION] = (b"LO", text("Study of Quixote Zebulon"))
    outcome = _run(raw_file(tmp_path / "in.dcm", elements), tmp_path, CLEAN)
    data = _output(tmp_path, outcome)
    assert _leaks(data) == []
    assert _readable(data).StudyDescription == "Study of *** ***"


ISO_2022_NAMES = {
    "patient-name": (PATIENT_NAME, b"PN", b"=\x1b$)CQuixote"),
}


@pytest.mark.parametrize("case", list(ISO_2022_NAMES))
def test_an_undecodable_value_gives_a_value_free_error(case: str, tmp_path: Path) -> None:
    """An ISO 2022 IR 87 value pydicom cannot decode (IndexError inside pydicom): the
    engine raises a DicomveilError naming the attribute, with no value and no context; the
    fast path gives up quietly (the reference decides)."""
    tag, vr, value = ISO_2022_NAMES[case]
    elements = base_elements()
    elements[CHARSET] = (b"CS", text("ISO 2022 IR 87"))
    elements[tag] = (vr, value)
    path = raw_file(tmp_path / "in.dcm", elements)
    with pytest.raises(DicomveilError) as caught:
        deidentify(read_instance(path).dataset, BASIC, KEYS)
    error = caught.value
    assert isinstance(error, MalformedInputError)
    assert "cannot be read" in str(error)
    assert error.__context__ is None and error.__cause__ is None
    assert not any(s.decode() in str(error) for s in SECRETS)
    data = path.read_bytes()
    start = 132 + 12 + struct.unpack_from("<L", data, 132 + 8)[0]
    compiled = compile_policy(BASIC)
    assert deidentify_encoded(data, start, len(data), False, compiled, KEYS, eof=True) is None
    outcome = _run(path, tmp_path, BASIC)
    assert outcome.status == "failed" and "cannot be read" in outcome.reason


def test_a_nested_iso_2022_name_is_handled_alike(tmp_path: Path) -> None:
    """The same name in an Other Patient IDs item is re-encoded leniently by pydicom: both
    paths agree, nothing of it is left."""
    elements = base_elements()
    elements[CHARSET] = (b"CS", text("ISO 2022 IR 87"))
    elements[tag_for_keyword("OtherPatientIDsSequence")] = (
        b"SQ",
        item([(PATIENT_NAME, b"PN", b"=\x1b$)CQuixote"), (0x00100020, b"LO", text("OTHER7"))]),
    )
    outcome = _run(raw_file(tmp_path / "in.dcm", elements), tmp_path, BASIC)
    assert _leaks(_output(tmp_path, outcome)) == []


def test_private_creators_with_odd_values(tmp_path: Path) -> None:
    """Private creators with padding, a NUL, a backslash, non-ASCII bytes or 64+ characters
    and their blocks: removed by both paths alike."""
    elements = base_elements()
    for group, creator in [
        (0x0009, b"ACME\0"),
        (0x0011, b"A\\B "),
        (0x0013, "MÄNCHA".encode("latin-1")),
        (0x0015, b"X" * 80),
    ]:
        elements[group << 16 | 0x0010] = (b"LO", creator + b" " * (len(creator) & 1))
        elements[group << 16 | 0x1001] = (b"LO", text("Quixote Zebulon"))
    outcome = _run(raw_file(tmp_path / "in.dcm", elements), tmp_path, BASIC)
    assert _leaks(_output(tmp_path, outcome)) == []


@pytest.mark.parametrize("label", [b"FD", b"US", b"UT", b"SH"])
def test_a_private_creator_is_read_as_lo(label: bytes, tmp_path: Path) -> None:
    """A private creator with another VR (the reference read it through pydicom and failed
    with BytesLengthException where the fast path read it as text): read as LO by both, and
    its block kept under a rule that keeps it."""
    elements = base_elements()
    elements[0x00090010] = (label, b"VENDOR X ")
    elements[0x00091001] = (b"LO", text("KEPT VALUE"))
    policy = Policy(private_rules=(PrivateRule("VENDOR X", OverrideAction.KEEP),))
    outcome = _run(raw_file(tmp_path / "in.dcm", elements), tmp_path, policy)
    ds = _readable(_output(tmp_path, outcome))
    assert ds[0x00090010].VR == "LO" and ds[0x00090010].value == "VENDOR X"
    assert ds[0x00091001].value == "KEPT VALUE"
    assert "private creator: value representation not the dictionary's: read as LO" in (
        outcome.flags
    )


def test_text_in_ob_and_un_with_known_tags(tmp_path: Path) -> None:
    """PatientComments (LT) sent as UN and as OB inside a sequence item: judged as LT."""
    elements = base_elements()
    elements[tag_for_keyword("PatientComments")] = (b"UN", FINDING)
    elements[STEPS] = (b"SQ", item([(COMMENTS, b"OB", FINDING)]))
    for policy in (BASIC, CLEAN):
        root = tmp_path / str(len(policy.options))
        outcome = _run(raw_file(tmp_path / "in.dcm", elements), root, policy)
        assert _leaks(_output(root, outcome)) == []


def test_the_raw_file_helper_writes_what_it_is_given(tmp_path: Path) -> None:
    elements = base_elements()
    elements[REVIEWER] = (b"SH", text("Quixote^Zebulon"))
    data = raw_file(tmp_path / "in.dcm", elements).read_bytes()
    assert encode(REVIEWER, b"SH", text("Quixote^Zebulon")) in data
    ds = pydicom.dcmread(tmp_path / "in.dcm")
    assert ds[REVIEWER].VR == "SH" and ds.PatientID == "PID0042"


def test_an_undecodable_name_the_walk_empties_is_still_collected(tmp_path: Path) -> None:
    """A referring physician's name pydicom cannot decode is emptied without being read; under
    clean-descriptors it is still collected (read leniently), so the file is de-identified
    and the name is cleaned from the description."""
    elements = base_elements()
    elements[CHARSET] = (b"CS", text("ISO 2022 IR 87"))
    elements[tag_for_keyword("ReferringPhysicianName")] = (b"PN", b"=\x1b$)CQuixote")
    elements[STUDY_DESCRIPTION] = (b"LO", text("Study of Quixote"))
    outcome = _run(raw_file(tmp_path / "in.dcm", elements), tmp_path, CLEAN)
    data = _output(tmp_path, outcome)
    assert _leaks(data) == []
    assert _readable(data).StudyDescription == "Study of ***"
