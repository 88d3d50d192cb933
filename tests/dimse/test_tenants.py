"""Organisations (tenants) on the DICOM node, with pynetdicom peers: two hospitals' modalities
store the same patient (same MRN, same UIDs); each hospital's reading AE finds and retrieves
only its own studies through C-FIND (every level), C-GET and C-MOVE; an AE bound to no
organisation sees all; the prefix and SOUTH's own key apply to what the node archived."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from dicomveil.dimse.settings import Caller, Destination, Role
from dicomveil.index import Level, Query
from dicomveil.keystore import create_key_file
from dicomveil.runtime import Runtime
from dicomveil.settings import CoreSettings
from tests.dimse.support import client_ae, node_settings, phi_study, running_node
from tests.support.servers import free_port

_FIND = StudyRootQueryRetrieveInformationModelFind
_GET = StudyRootQueryRetrieveInformationModelGet
_MOVE = StudyRootQueryRetrieveInformationModelMove
_READERS = {"NORTHRD": "NORTH", "SOUTHRD": "SOUTH", "ALLRD": None}


@pytest.fixture
def runtime(home: Path, key_file: Path, tmp_path: Path) -> Iterator[Runtime]:
    create_key_file(tmp_path / "south.key")
    config = tmp_path / "dicomveil.toml"
    config.write_text(
        '[organisations.NORTH]\npseudonym_prefix = "NRT"\n\n'
        '[organisations.SOUTH]\nkey_file = "south.key"\n',
        encoding="utf-8",
    )
    settings = CoreSettings.load(home=home, key_file=key_file, config=config, deid_processes=1)
    with Runtime.open(settings) as opened:
        yield opened


@pytest.fixture
def node(
    runtime: Runtime, tmp_path: Path, mover: tuple[int, list[pydicom.Dataset]]
) -> Iterator[tuple[int, dict[str, str]]]:
    """A node holding the same study stored by NORTHCT and SOUTHCT; its port, and each
    organisation's pseudonymous Study Instance UID."""
    callers = {
        "NORTHCT": Caller(frozenset({Role.INGEST}), (), "NORTH"),
        "SOUTHCT": Caller(frozenset({Role.INGEST}), (), "SOUTH"),
        **{ae: Caller(frozenset({Role.READ}), (), org) for ae, org in _READERS.items()},
    }
    destinations = {"MOVER": Destination("127.0.0.1", mover[0])}
    files = phi_study(tmp_path / "sent", images=2)
    with running_node(runtime, node_settings(callers=callers, destinations=destinations)) as node:
        port = node.address[1]
        for sender in ("NORTHCT", "SOUTHCT"):
            assoc = client_ae(CTImageStorage, ae_title=sender).associate("127.0.0.1", port)
            assert assoc.is_established
            statuses = [assoc.send_c_store(pydicom.dcmread(p)).Status for p in files]
            assoc.release()
            assert statuses == [0, 0]
        studies = {}
        for org in ("NORTH", "SOUTH"):
            (row,) = runtime.index.search(Query(Level.STUDY, organisation=org)).rows
            studies[org] = str(row.values["StudyInstanceUID"])
        yield port, studies


def _find(port: int, reader: str, level: str, **keys: str) -> list[pydicom.Dataset]:
    identifier = pydicom.Dataset()
    identifier.QueryRetrieveLevel = level
    identifier.StudyInstanceUID = keys.get("study", "")
    identifier.PatientID = ""
    if level in ("SERIES", "IMAGE"):
        identifier.SeriesInstanceUID = ""
    if level == "IMAGE":
        identifier.SOPInstanceUID = ""
    assoc = client_ae(_FIND, ae_title=reader).associate("127.0.0.1", port)
    assert assoc.is_established
    answers = [ds for status, ds in assoc.send_c_find(identifier, _FIND) if status.Status == 0xFF00]
    assoc.release()
    return answers


def _get(port: int, reader: str, study: str) -> tuple[int, int]:
    """C-GET of ``study``: (instances received, final status)."""
    received: list[Any] = []

    def on_store(event: Any) -> int:
        received.append(event.dataset)
        return 0x0000

    from pynetdicom import evt
    from pynetdicom.presentation import build_role

    ae = client_ae(_GET, CTImageStorage, ae_title=reader)
    assoc = ae.associate(
        "127.0.0.1",
        port,
        ext_neg=[build_role(CTImageStorage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    identifier = pydicom.Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study
    statuses = [status.Status for status, _ in assoc.send_c_get(identifier, _GET) if status]
    assoc.release()
    return len(received), statuses[-1]


@pytest.fixture
def mover() -> Iterator[tuple[int, list[pydicom.Dataset]]]:
    """A pynetdicom Storage SCP listening as the node's C-MOVE destination ``MOVER``: its
    port, and what it received."""
    from pynetdicom import AE, evt

    received: list[pydicom.Dataset] = []

    def on_store(event: Any) -> int:
        received.append(event.dataset)
        return 0x0000

    ae = AE(ae_title="MOVER")
    ae.add_supported_context(CTImageStorage)
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        yield port, received
    finally:
        server.shutdown()


def _move(port: int, reader: str, study: str) -> None:
    """C-MOVE of ``study`` to ``MOVER``."""
    assoc = client_ae(_MOVE, ae_title=reader).associate("127.0.0.1", port)
    assert assoc.is_established
    identifier = pydicom.Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study
    answers = [status for status, _ in assoc.send_c_move(identifier, "MOVER", _MOVE) if status]
    assoc.release()
    assert answers[-1].Status == 0x0000


def test_each_reading_ae_finds_only_its_organisations_studies(
    node: tuple[int, dict[str, str]],
) -> None:
    port, studies = node
    assert studies["NORTH"] != studies["SOUTH"]
    for reader, org in (("NORTHRD", "NORTH"), ("SOUTHRD", "SOUTH")):
        other = studies["SOUTH" if org == "NORTH" else "NORTH"]
        for level in ("STUDY", "SERIES", "IMAGE"):
            found = {str(ds.StudyInstanceUID) for ds in _find(port, reader, level)}
            assert found == {studies[org]}, (reader, level)
            assert _find(port, reader, level, study=other) == [], (reader, level)
    everyone = {str(ds.StudyInstanceUID) for ds in _find(port, "ALLRD", "STUDY")}
    assert everyone == set(studies.values())


def test_retrieves_of_another_organisations_study_match_nothing(
    node: tuple[int, dict[str, str]], mover: tuple[int, list[pydicom.Dataset]]
) -> None:
    port, studies = node
    received_by_mover = mover[1]
    assert _get(port, "NORTHRD", studies["NORTH"]) == (2, 0x0000)
    received, _ = _get(port, "NORTHRD", studies["SOUTH"])
    assert received == 0
    received, _ = _get(port, "SOUTHRD", studies["NORTH"])
    assert received == 0
    _move(port, "NORTHRD", studies["SOUTH"])
    assert received_by_mover == []
    _move(port, "NORTHRD", studies["NORTH"])
    assert {str(ds.StudyInstanceUID) for ds in received_by_mover} == {studies["NORTH"]}
    assert len(received_by_mover) == 2


def test_the_organisations_prefix_and_key_apply_to_what_the_node_archived(
    node: tuple[int, dict[str, str]], runtime: Runtime
) -> None:
    port, _ = node
    patients = {}
    for reader in ("NORTHRD", "SOUTHRD"):
        (answer,) = _find(port, reader, "STUDY")
        patients[reader] = str(answer.PatientID)
    assert patients["NORTHRD"].startswith("NRT-")
    assert patients["SOUTHRD"].startswith("SOUTH-")
    assert patients["NORTHRD"][4:] != patients["SOUTHRD"][6:]
    runs = [e for e in runtime.audit.entries() if e.event == "deid.run.start"]
    assert {e.details.get("organisation") for e in runs} == {"NORTH", "SOUTH"}
