"""The C-FIND answer encoder and pynetdicom's fast path against pydicom's writer."""

from __future__ import annotations

from io import BytesIO
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pynetdicom import dimse_messages, dimse_primitives, dsutils, service_class

from dicomveil.dimse import encoding, fastpath, query

STUDY_KEYS = (
    "StudyInstanceUID", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "StudyDate", "StudyTime", "ModalitiesInStudy", "AccessionNumber", "StudyDescription",
    "ReferringPhysicianName", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
    "StudyID",
)  # fmt: skip

ROWS: tuple[dict[str, object], ...] = (
    {  # plain ASCII, odd lengths (UI padded with NUL, text with a space), multi-valued
        "StudyInstanceUID": "2.25.1234567890123456789",
        "PatientName": "ANON^PATIENT",
        "PatientID": "P12345678",
        "StudyDate": "20200101",
        "StudyTime": "101010.5",
        "ModalitiesInStudy": ["CT", "MR", "SR"],
        "AccessionNumber": "A1",
        "NumberOfStudyRelatedSeries": "3",
        "NumberOfStudyRelatedInstances": "120",
    },
    {  # non-ASCII person name groups and description: ISO_IR 192
        "StudyInstanceUID": "2.25.99",
        "PatientName": "Yamada^Tarou=山田^太郎=やまだ^たろう",
        "PatientID": "P-é",
        "StudyDescription": "Thorax ä ö ü",
        "ReferringPhysicianName": "Müller^Jürgen",
        "StudyDate": "20190101-20191231",
        "ModalitiesInStudy": ["CT"],
    },
    {},  # every key empty (universal matching with nothing known)
    {  # empty strings and an empty list
        "StudyInstanceUID": "2.25.7",
        "PatientName": "",
        "ModalitiesInStudy": [],
        "StudyDescription": "x",
    },
)


def _request(level: str = "STUDY", keys: tuple[str, ...] = STUDY_KEYS) -> query.FindRequest:
    return query.FindRequest(level, {}, keys)


def _decoded(data: bytes, implicit: bool) -> Dataset:
    return read_dataset(BytesIO(data), implicit, True)


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit", "explicit"])
@pytest.mark.parametrize("row", range(len(ROWS)))
def test_answer_bytes_are_pydicoms(implicit: bool, row: int) -> None:
    """The fast answer is byte for byte what pydicom writes for the same answer dataset, and
    decodes to an equal dataset."""
    values = ROWS[row]
    fast = query._answer(_request(), dict(values), "DICOMVEIL", implicit)
    plain = query._answer(_request(), dict(values), "DICOMVEIL", None)
    assert isinstance(fast, encoding.EncodedIdentifier)
    assert not isinstance(plain, encoding.EncodedIdentifier)
    reference = dsutils.encode(plain, implicit, True)
    assert reference is not None
    assert fast.encoded == reference
    assert _decoded(fast.encoded, implicit) == _decoded(reference, implicit)
    # without the fast path, pydicom writes the raw elements back to the same bytes
    assert fastpath._original(fast, implicit, True) == reference
    # and in the other VR encoding (converted by pydicom from the raw elements)
    assert fastpath.encode(fast, not implicit, True) == dsutils.encode(plain, not implicit, True)


def test_non_ascii_answer_says_iso_ir_192() -> None:
    fast = query._answer(_request(), dict(ROWS[1]), "DICOMVEIL", True)
    decoded = _decoded(fast.encoded, True)
    assert decoded.SpecificCharacterSet == "ISO_IR 192"
    assert str(decoded.PatientName) == ROWS[1]["PatientName"]
    assert decoded.StudyDescription == ROWS[1]["StudyDescription"]


def test_patient_level_counts() -> None:
    keys = ("PatientName", "PatientID", "NumberOfPatientRelatedStudies")
    values = {"PatientName": "A^B", "PatientID": "1", "NumberOfPatientRelatedStudies": 4}
    fast = query._answer(_request("PATIENT", keys), values, "NODE", False)
    plain = query._answer(_request("PATIENT", keys), values, "NODE", None)
    assert fast.encoded == dsutils.encode(plain, False, True)


@pytest.mark.parametrize(
    "keys",
    [
        ("StudyInstanceUID", "ReferencedStudySequence"),  # a sequence
        ("StudyInstanceUID", "SmallestImagePixelValue"),  # an ambiguous VR (US or SS)
    ],
    ids=["sequence", "ambiguous"],
)
def test_not_flat_falls_back_to_pydicom(keys: tuple[str, ...]) -> None:
    answer = query._answer(_request(keys=keys), {"StudyInstanceUID": "1.2"}, "NODE", True)
    assert not isinstance(answer, encoding.EncodedIdentifier)
    assert dsutils.encode(answer, True, True)


@pytest.mark.parametrize(
    "elements",
    [
        [(0x00080005, "CS", "ISO 2022 IR 87"), (0x00100010, "PN", "X")],  # another charset
        [(0x00100010, "PN", "é")],  # non-ASCII without ISO_IR 192
        [(0x00081140, "SQ", None)],  # sequence
        [(0x00280106, "US or SS", 1)],  # ambiguous
        [(0x00000900, "US", "1")],  # a number as text
        [(0x00100010, "PN", b"raw")],  # bytes
    ],
)
def test_encoder_declines(elements: list[Any]) -> None:
    assert encoding.encode_elements(elements, implicit=True) is None
    assert encoding.identifier(elements, implicit=False) is None


def _command_sets() -> list[Dataset]:
    """Command sets of the messages a node sends and receives, as pynetdicom builds them."""
    sets = []
    find, store, move = dimse_primitives.C_FIND, dimse_primitives.C_STORE, dimse_primitives.C_MOVE
    cases: list[tuple[Any, Any, dict[str, object]]] = [
        (dimse_messages.C_FIND_RSP, find, {"Status": 0xFF00}),
        (dimse_messages.C_FIND_RSP, find, {"Status": 0x0000}),
        (dimse_messages.C_FIND_RSP, find, {"Status": 0xA900, "ErrorComment": "Level: missing"}),
        (dimse_messages.C_STORE_RSP, store, {"Status": 0, "AffectedSOPInstanceUID": "1.2.3.45"}),
        (
            dimse_messages.C_STORE_RQ,
            store,
            {
                "MessageID": 7,
                "Priority": 2,
                "AffectedSOPInstanceUID": "1.2.3",
                "MoveOriginatorApplicationEntityTitle": "MOVER",
                "MoveOriginatorMessageID": 3,
            },
        ),
        (
            dimse_messages.C_MOVE_RSP,
            move,
            {
                "Status": 0xFF00,
                "NumberOfRemainingSuboperations": 5,
                "NumberOfCompletedSuboperations": 1,
                "NumberOfFailedSuboperations": 0,
                "NumberOfWarningSuboperations": 0,
            },
        ),
        (dimse_messages.C_ECHO_RSP, dimse_primitives.C_ECHO, {"Status": 0}),
    ]
    for message, primitive, fields in cases:
        prim = primitive()
        prim.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.1"
        if "MessageID" not in fields:
            prim.MessageIDBeingRespondedTo = 1
        for name, value in fields.items():
            setattr(prim, name, value)
        msg = message()
        msg.primitive_to_message(prim)
        sets.append(msg.command_set)
    return sets


@pytest.mark.parametrize("command_set", _command_sets(), ids=lambda ds: f"0x{ds.CommandField:04X}")
def test_command_sets_are_pydicoms(command_set: Dataset) -> None:
    assert encoding.encode_dataset(command_set, implicit=True) == fastpath._original(
        command_set, True, True
    )


def test_install_is_guarded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed only on a checked pynetdicom whose encode names are still its own."""
    import pynetdicom

    for module in (service_class, dimse_messages):
        monkeypatch.setattr(module, "encode", dsutils.encode)
    monkeypatch.setattr(pynetdicom, "__version__", "4.0.0")
    assert not fastpath.install() and not fastpath.installed()
    monkeypatch.setattr(pynetdicom, "__version__", "3.0.4")
    monkeypatch.setattr(dimse_messages, "encode", lambda *a: None)  # someone else's
    assert not fastpath.install()
    monkeypatch.setattr(dimse_messages, "encode", dsutils.encode)
    assert fastpath.install() and fastpath.installed()
    assert service_class.encode is fastpath.encode


def test_fast_encode_keeps_pynetdicoms_behaviour() -> None:
    """Everything the fast path does not take goes to pynetdicom's encode, unchanged."""
    ds = pydicom.Dataset()
    ds.PatientName = "Müller"
    ds.SpecificCharacterSet = "ISO_IR 100"
    for implicit in (True, False):
        assert fastpath.encode(ds, implicit, True) == dsutils.encode(ds, implicit, True)
    assert fastpath.encode(ds, False, True, True) == dsutils.encode(ds, False, True, True)
