"""Who may associate, and what each caller may do: A-ASSOCIATE-RJ and 0124H, audited."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from dicomveil.dimse.access import Admission, Refusal, admit
from dicomveil.dimse.settings import Caller, DimseSettings, Role
from tests.dimse.support import (
    NODE_AE,
    SENDER_AE,
    audit_entries,
    client_ae,
    dcmtk,
    node_settings,
    phi_study,
    running_node,
)

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
ROLES = {
    "allowed_ae_titles": frozenset({SENDER_AE, "READER"}),
    "callers": {"READER": Caller(frozenset({Role.READ}))},
    "default_roles": frozenset({Role.INGEST}),
}


class TestAdmit:
    def test_any_caller_when_no_list(self) -> None:
        decision = admit(DimseSettings(), "ANYONE", NODE_AE, "192.0.2.1")
        assert decision == Admission("ANYONE", frozenset({Role.INGEST, Role.READ}))

    def test_unknown_caller_refused(self) -> None:
        settings = DimseSettings(allowed_ae_titles=frozenset({"CT01"}))
        assert admit(settings, "CT02", NODE_AE, "127.0.0.1") == Refusal("calling-ae")
        assert admit(settings, "CT01  ", NODE_AE, "127.0.0.1") == Admission(
            "CT01", frozenset({Role.INGEST, Role.READ})
        )

    def test_networks_per_caller_and_node(self) -> None:
        ten = (ipaddress.ip_network("10.0.0.0/8"),)
        settings = DimseSettings(
            networks=ten,
            callers={"HOME": Caller(frozenset({Role.READ}), (ipaddress.ip_network("::1/128"),))},
        )
        assert admit(settings, "X", NODE_AE, "10.1.2.3") == Admission(
            "X", frozenset({Role.INGEST, Role.READ})
        )
        assert admit(settings, "X", NODE_AE, "127.0.0.1") == Refusal("network")
        assert admit(settings, "X", NODE_AE, "::ffff:10.0.0.7") != Refusal("network")
        assert admit(settings, "HOME", NODE_AE, "::1") == Admission("HOME", frozenset({Role.READ}))
        assert admit(settings, "HOME", NODE_AE, "10.1.2.3") == Refusal("network")

    def test_called_ae_checked_when_asked(self) -> None:
        settings = DimseSettings(require_called_ae_title=True)
        assert admit(settings, "X", "OTHER", "127.0.0.1") == Refusal("called-ae")
        assert Refusal("called-ae").diagnostic == 0x07

    def test_no_role_refused(self) -> None:
        settings = DimseSettings(callers={"MUTE": Caller(frozenset())})
        assert admit(settings, "MUTE", NODE_AE, "127.0.0.1") == Refusal("no-role")


class TestOnTheWire:
    def test_unknown_calling_ae_gets_associate_rj(self, runtime: Any) -> None:
        settings = node_settings(allowed_ae_titles=frozenset({SENDER_AE}))
        with running_node(runtime, settings) as node:
            port = node.address[1]
            refused = dcmtk("echoscu", "-aet", "STRANGER", "-aec", NODE_AE, "127.0.0.1", port)
            allowed = dcmtk("echoscu", "-aet", SENDER_AE, "-aec", NODE_AE, "127.0.0.1", port)
            assoc = client_ae("1.2.840.10008.1.1", ae_title="STRANGER").associate(
                "127.0.0.1", port, ae_title=NODE_AE
            )
        assert refused.returncode != 0
        assert "Calling AE Title Not Recognized" in refused.stderr + refused.stdout
        assert allowed.returncode == 0
        assert assoc.is_rejected
        assert (assoc.acceptor.primitive.result_source, assoc.acceptor.primitive.diagnostic) == (
            1,
            3,
        )
        denied = [e for e in audit_entries(runtime, "dimse.association") if e.outcome == "denied"]
        assert len(denied) == 2
        assert denied[0].actor == "ae:STRANGER"
        assert denied[0].details["refused"] == "calling-ae"

    def test_network_refused(self, runtime: Any) -> None:
        settings = node_settings(networks=(ipaddress.ip_network("10.0.0.0/8"),))
        with running_node(runtime, settings) as node:
            done = dcmtk(
                "echoscu", "-aet", SENDER_AE, "-aec", NODE_AE, "127.0.0.1", node.address[1]
            )
        assert done.returncode != 0

    def test_reader_may_not_store(self, runtime: Any, tmp_path: Path) -> None:
        import pydicom

        path = phi_study(tmp_path, images=1)[0]
        with running_node(runtime, node_settings(**ROLES)) as node:
            assoc = client_ae(CT_IMAGE, ae_title="READER").associate(
                "127.0.0.1", node.address[1], ae_title=NODE_AE
            )
            assert assoc.is_established
            answer = assoc.send_c_store(pydicom.dcmread(path))
            assoc.release()
        assert answer.Status == 0x0124
        assert runtime.index.counts().instances == 0

    def test_ingest_only_caller_is_not_offered_query_contexts(self, runtime: Any) -> None:
        with running_node(runtime, node_settings(**ROLES)) as node:
            port = node.address[1]
            modality = client_ae(STUDY_FIND).associate("127.0.0.1", port, ae_title=NODE_AE)
            reader = client_ae(STUDY_FIND, ae_title="READER").associate(
                "127.0.0.1", port, ae_title=NODE_AE
            )
            accepted = [len(a.accepted_contexts) for a in (modality, reader)]
            for assoc in (modality, reader):
                assoc.release()
        assert accepted == [0, 1]


@pytest.mark.parametrize("syntax", ["1.2.3.4.5.6"])
def test_unsupported_transfer_syntax_is_rejected(runtime: Any, syntax: str) -> None:
    from pynetdicom import AE

    ae = AE(ae_title=SENDER_AE)
    ae.add_requested_context(CT_IMAGE, [syntax])
    with running_node(runtime, node_settings()) as node:
        assoc = ae.associate("127.0.0.1", node.address[1], ae_title=NODE_AE)
        contexts = assoc.rejected_contexts
        if assoc.is_established:
            assoc.release()
    assert [(c.abstract_syntax, c.result) for c in contexts] == [(CT_IMAGE, 0x04)]
