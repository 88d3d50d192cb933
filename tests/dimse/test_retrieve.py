"""C-FIND at every level, C-GET and C-MOVE on the de-identified archive (DCMTK peers)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from dicomveil.dimse.settings import Destination
from tests.dimse.support import (
    NODE_AE,
    SENDER_AE,
    assert_no_phi,
    audit_entries,
    client_ae,
    dcmtk,
    dcmtk_binary,
    files_in,
    node_settings,
    phi_study,
    running_node,
    study_uids,
)
from tests.support.servers import free_port, start, stop, wait_tcp

STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"


@pytest.fixture
def filled(runtime: Any, tmp_path: Path) -> Iterator[tuple[Any, int, list[Path]]]:
    """A node holding one study of 2 series x 2 images (sent by storescu), and its port."""
    files = phi_study(tmp_path / "sent", images=2, series=2)
    archive = tmp_path / "mover"
    destinations = {"ARCHIVE": Destination("127.0.0.1", free_port())}
    with running_node(runtime, node_settings(destinations=destinations)) as node:
        port = node.address[1]
        sent = dcmtk("storescu", "-aet", SENDER_AE, "-aec", NODE_AE, "127.0.0.1", port, *files)
        assert sent.returncode == 0, sent.stderr
        archive.mkdir()
        yield node, port, files


def _find(port: int, folder: Path, *keys: str, model: str = "-S") -> list[pydicom.Dataset]:
    folder.mkdir(parents=True, exist_ok=True)
    args = [a for key in keys for a in ("-k", key)]
    done = dcmtk(
        "findscu", model, "-X", "-aet", SENDER_AE, "-aec", NODE_AE, *args, "127.0.0.1", port,
        cwd=folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for path in files_in(folder):
        assert_no_phi(path.read_bytes(), "a C-FIND answer")
    return [pydicom.dcmread(p) for p in files_in(folder)]


class TestFind:
    def test_every_level(self, filled: Any, runtime: Any, tmp_path: Path) -> None:
        _, port, _ = filled
        (study,) = study_uids(runtime)
        studies = _find(
            port, tmp_path / "st", "QueryRetrieveLevel=STUDY", "StudyInstanceUID",
            "PatientID", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
        )  # fmt: skip
        assert [s.StudyInstanceUID for s in studies] == [study]
        assert studies[0].NumberOfStudyRelatedSeries == 2
        assert studies[0].ModalitiesInStudy == "CT"
        series = _find(
            port, tmp_path / "se", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={study}",
            "SeriesInstanceUID", "Modality", "NumberOfSeriesRelatedInstances",
        )  # fmt: skip
        assert len(series) == 2
        assert {s.NumberOfSeriesRelatedInstances for s in series} == {2}
        images = _find(
            port, tmp_path / "im", "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={study}",
            f"SeriesInstanceUID={series[0].SeriesInstanceUID}", "SOPInstanceUID",
        )  # fmt: skip
        assert len(images) == 2
        patients = _find(
            port, tmp_path / "pa", "QueryRetrieveLevel=PATIENT", "PatientID", "PatientName",
            "NumberOfPatientRelatedStudies", model="-P",
        )  # fmt: skip
        assert len(patients) == 1
        assert patients[0].NumberOfPatientRelatedStudies == 1
        assert patients[0].PatientID == studies[0].PatientID

    def test_matching_is_the_index_matching(self, filled: Any, tmp_path: Path) -> None:
        _, port, _ = filled
        none = _find(port, tmp_path / "a", "QueryRetrieveLevel=STUDY", "PatientID=CANARY*")
        assert none == []  # an original value matches nothing: only pseudonyms are indexed
        (study,) = _find(port, tmp_path / "b", "QueryRetrieveLevel=STUDY", "PatientID")
        pseudonym = str(study.PatientID)
        keys = ("QueryRetrieveLevel=STUDY", "StudyInstanceUID")
        wild = _find(port, tmp_path / "c", *keys, f"PatientID={pseudonym[:3]}*")
        listed = _find(port, tmp_path / "d", *keys, "ModalitiesInStudy=MR\\CT")
        other = _find(port, tmp_path / "e", *keys, "ModalitiesInStudy=MR")
        assert [len(wild), len(listed), len(other)] == [1, 1, 0]

    def test_bad_level_is_a900(self, filled: Any) -> None:
        _, port, _ = filled
        identifier = pydicom.Dataset()
        identifier.QueryRetrieveLevel = "PATIENT"  # not in the Study Root model
        identifier.PatientID = ""
        assoc = client_ae(STUDY_FIND).associate("127.0.0.1", port, ae_title=NODE_AE)
        answers = list(assoc.send_c_find(identifier, STUDY_FIND))
        assoc.release()
        assert [status.Status for status, _ in answers] == [0xA900]
        assert "QueryRetrieveLevel" in answers[0][0].ErrorComment

    def test_identifiers_are_not_formatted_for_the_log(
        self, filled: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """pynetdicom formats every request identifier and pending response line by line for
        its log (which the node keeps at WARNING): work for nothing, and values in memory
        as text. The node turns that off."""
        import pynetdicom.association
        import pynetdicom.service_class
        from pynetdicom import _config

        from dicomveil.dimse.logs import quiet_pynetdicom

        formatted: list[str] = []
        for module in (pynetdicom.service_class, pynetdicom.association):
            monkeypatch.setattr(module, "pretty_dataset", lambda ds, **_: formatted.append("x"))
        for switch in ("LOG_REQUEST_IDENTIFIERS", "LOG_RESPONSE_IDENTIFIERS"):
            monkeypatch.setattr(_config, switch, True)  # pynetdicom's default; restored after
        monkeypatch.setattr(_config, "LOG_HANDLER_LEVEL", "standard")
        quiet_pynetdicom()  # what the node does when it starts
        assert _config.LOG_HANDLER_LEVEL == "none"  # no logging handler per message or PDU
        _, port, _ = filled
        identifier = pydicom.Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.PatientID = ""
        assoc = client_ae(STUDY_FIND).associate("127.0.0.1", port, ae_title=NODE_AE)
        answers = list(assoc.send_c_find(identifier, STUDY_FIND))
        assoc.release()
        assert [status.Status for status, _ in answers] == [0xFF00, 0x0000]
        assert formatted == []

    @pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"])
    def test_fast_answers_equal_the_pydicom_answers(
        self, filled: Any, syntax: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Over a real association, the pre-encoded answers (and fast command sets) decode to
        the answers the node gave before them (datasets written by pydicom)."""
        import pynetdicom.dimse_messages
        import pynetdicom.service_class
        from pynetdicom import AE, dsutils

        from dicomveil.dimse import encoding, fastpath, handlers, query

        _, port, _ = filled
        identifier = pydicom.Dataset()
        identifier.QueryRetrieveLevel = "SERIES"
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber",
                        "PatientName", "PatientID", "StudyDate", "SeriesDescription",
                        "NumberOfSeriesRelatedInstances", "BodyPartExamined"):  # fmt: skip
            setattr(identifier, keyword, "")
        encoded: list[bool] = []
        real_identifier = encoding.identifier

        def counting(*args: Any, **kwargs: Any) -> Any:
            made = real_identifier(*args, **kwargs)
            encoded.append(made is not None)
            return made

        def find() -> list[tuple[int, pydicom.Dataset | None]]:
            ae = AE(ae_title=SENDER_AE)
            ae.add_requested_context(STUDY_FIND, [syntax])
            assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
            assert assoc.accepted_contexts[0].transfer_syntax[0] == syntax
            found = [(st.Status, ds) for st, ds in assoc.send_c_find(identifier, STUDY_FIND)]
            assoc.release()
            return found

        monkeypatch.setattr(query.encoding, "identifier", counting)
        assert fastpath.installed()
        fast = find()
        assert encoded == [True, True]
        for module in (pynetdicom.service_class, pynetdicom.dimse_messages):
            monkeypatch.setattr(module, "encode", dsutils.encode)
        monkeypatch.setattr(handlers, "_implicit", lambda event: None)
        before = find()
        assert encoded == [True, True]  # the second search built datasets
        assert [status for status, _ in fast] == [0xFF00, 0xFF00, 0x0000]
        assert fast == before


class TestRetrieve:
    def test_getscu_receives_the_study(self, filled: Any, runtime: Any, tmp_path: Path) -> None:
        _, port, _ = filled
        (study,) = study_uids(runtime)
        out = tmp_path / "got"
        out.mkdir()
        done = dcmtk(
            "getscu", "-S", "-aet", SENDER_AE, "-aec", NODE_AE, "-k", "QueryRetrieveLevel=STUDY",
            "-k", f"StudyInstanceUID={study}", "-od", out, "127.0.0.1", port,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        got = files_in(out)
        assert len(got) == 4
        for path in got:
            assert_no_phi(path.read_bytes(), "a retrieved instance")
            assert pydicom.dcmread(path).StudyInstanceUID == study
        (read,) = audit_entries(runtime, "dimse.retrieve")
        assert read.details["service"] == "C-GET"
        assert read.details["pseudo_study_uids"] == [study]
        assert read.details["instances"] == 4

    def test_movescu_to_storescp(self, filled: Any, runtime: Any, tmp_path: Path) -> None:
        node, port, _ = filled
        destination = node.settings.destinations["ARCHIVE"]
        received = tmp_path / "storescp"
        received.mkdir()
        scp = start(
            [dcmtk_binary("storescp"), "-aet", "ARCHIVE", "-od", str(received),
             str(destination.port)],
            tmp_path / "storescp.log",
        )  # fmt: skip
        try:
            wait_tcp(destination.port, proc=scp)
            (study,) = study_uids(runtime)
            done = dcmtk(
                "movescu", "-S", "-aet", SENDER_AE, "-aec", NODE_AE, "-aem", "ARCHIVE",
                "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
                "127.0.0.1", port,
            )  # fmt: skip
            unknown = dcmtk(
                "movescu", "-S", "-aet", SENDER_AE, "-aec", NODE_AE, "-aem", "NOWHERE",
                "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
                "127.0.0.1", port,
            )  # fmt: skip
        finally:
            stop(scp)
        assert done.returncode == 0, done.stderr
        moved = files_in(received)
        assert len(moved) == 4
        for path in moved:
            assert_no_phi(path.read_bytes(), "a moved instance")
        assert "MoveDestinationUnknown" in unknown.stderr + unknown.stdout
        reads = audit_entries(runtime, "dimse.retrieve")
        assert [(r.details["service"], r.details["destination_ae"]) for r in reads] == [
            ("C-MOVE", "ARCHIVE")
        ]


def test_dcmtk_is_real() -> None:
    version = subprocess.run(
        [dcmtk_binary("findscu"), "--version"], capture_output=True, text=True, check=False
    )
    assert "dcmtk" in version.stdout.lower()
