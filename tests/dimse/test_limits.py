"""Association limits, PDU size and DICOM TLS on the wire."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dicomveil.dimse.settings import TlsSettings
from tests.dimse.support import NODE_AE, audit_entries, client_ae, node_settings, running_node
from tests.support.servers import require_binary

VERIFICATION = "1.2.840.10008.1.1"


def test_max_associations_rejects_transiently(runtime: Any) -> None:
    with running_node(runtime, node_settings(max_associations=1)) as node:
        port = node.address[1]
        first = client_ae(VERIFICATION).associate("127.0.0.1", port, ae_title=NODE_AE)
        second = client_ae(VERIFICATION).associate("127.0.0.1", port, ae_title=NODE_AE)
        assert first.is_established
        first.release()
    assert second.is_rejected
    rejection = second.acceptor.primitive
    assert (rejection.result, rejection.result_source, rejection.diagnostic) == (2, 3, 2)
    busy = [e for e in audit_entries(runtime, "dimse.association") if e.outcome == "denied"]
    assert [e.details["refused"] for e in busy] == ["busy"]


def test_max_pdu_size_is_announced(runtime: Any) -> None:
    with running_node(runtime, node_settings(max_pdu_size=16384)) as node:
        assoc = client_ae(VERIFICATION).associate("127.0.0.1", node.address[1], ae_title=NODE_AE)
        announced = assoc.acceptor.maximum_length
        assoc.release()
    assert announced == 16384


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, and a server and a client certificate it signed (openssl, EC keys)."""
    folder = tmp_path_factory.mktemp("tls")
    openssl = require_binary("openssl")
    paths = {name: folder / f"{name}.pem" for name in ("ca", "ca-key", "node", "node-key",
                                                       "client", "client-key")}  # fmt: skip

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True)

    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run("req", "-x509", *key, "-days", "1", "-subj", "/CN=test-ca",
        "-keyout", str(paths["ca-key"]), "-out", str(paths["ca"]))  # fmt: skip
    for name in ("node", "client"):
        csr = folder / f"{name}.csr"
        run("req", *key, "-subj", f"/CN={name}",
            "-keyout", str(paths[f"{name}-key"]), "-out", str(csr))  # fmt: skip
        run("x509", "-req", "-in", str(csr), "-CA", str(paths["ca"]),
            "-CAkey", str(paths["ca-key"]), "-CAcreateserial", "-days", "1",
            "-out", str(paths[name]))  # fmt: skip
    return paths


def test_tls_with_client_certificates(runtime: Any, certificates: dict[str, Path]) -> None:
    paths = certificates
    tls = TlsSettings(paths["node"], paths["node-key"], paths["ca"], True)

    def client(with_certificate: bool) -> Any:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(paths["ca"]))
        context.check_hostname = False
        if with_certificate:
            context.load_cert_chain(paths["client"], paths["client-key"])
        return client_ae(VERIFICATION).associate(
            "127.0.0.1", port, ae_title=NODE_AE, tls_args=(context, None)
        )

    with running_node(runtime, node_settings(tls=tls)) as node:
        port = node.address[1]
        good = client(True)
        assert good.is_established
        assert good.send_c_echo().Status == 0
        good.release()
        bad = client(False)
        assert not bad.is_established
        plain = client_ae(VERIFICATION).associate("127.0.0.1", port, ae_title=NODE_AE)
        assert not plain.is_established


@pytest.mark.parametrize("missing", ["certificate", "ca_certificates"])
def test_unusable_tls_files_fail_at_start(
    runtime: Any, tmp_path: Path, certificates: dict[str, Path], missing: str
) -> None:
    from dicomveil.dimse.server import DimseNode
    from dicomveil.errors import ConfigError

    paths = certificates
    files = {"certificate": paths["node"], "ca_certificates": paths["ca"]}
    files[missing] = tmp_path / "absent.pem"
    tls = TlsSettings(files["certificate"], paths["node-key"], files["ca_certificates"], True)
    node = DimseNode(runtime, node_settings(tls=tls))
    with pytest.raises(ConfigError, match=r"\[dimse.tls\]"):
        node.start()
