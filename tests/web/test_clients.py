"""Real clients against a running ``dicomveil serve``: dicomweb-client, TLS, plain HTTP."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest

from dicomveil.demo import write_demo_study
from dicomveil.pipeline.verify import verify_folders
from tests.web.gateway_server import ROOT, Gateway, running_gateway
from tests.web.support import TEST_KEY

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    home = tmp_path_factory.mktemp("gateway") / "home"
    with running_gateway(home, TEST_KEY) as running:
        yield running


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("originals")
    return write_demo_study(folder, patients=2, series_per_study=2, images_per_series=3, seed=7)


def client(gateway: Gateway, role: str) -> object:
    from dicomweb_client.api import DICOMwebClient

    return DICOMwebClient(
        url=f"{gateway.url}/dicomweb",
        headers={"Authorization": f"Bearer {gateway.tokens[role]}"},
    )


class TestDicomwebClient:
    def test_store_search_retrieve(
        self, gateway: Gateway, originals: list[Path], tmp_path: Path
    ) -> None:
        writer = client(gateway, "ingest")
        reader = client(gateway, "read")
        sent = [pydicom.dcmread(path) for path in originals]
        answer = writer.store_instances(datasets=sent)  # type: ignore[attr-defined]
        assert len(answer.ReferencedSOPSequence) == len(sent)
        studies = reader.search_for_studies()  # type: ignore[attr-defined]
        assert len(studies) == 2
        uids = sorted(s["0020000D"]["Value"][0] for s in studies)
        patient = studies[0]["00100020"]["Value"][0]
        found = reader.search_for_studies(search_filters={"PatientID": patient})  # type: ignore[attr-defined]
        assert len(found) == 1
        series = reader.search_for_series(uids[0])  # type: ignore[attr-defined]
        assert len(series) == 2
        instances = reader.search_for_instances(  # type: ignore[attr-defined]
            uids[0], series[0]["0020000E"]["Value"][0]
        )
        assert len(instances) == 3
        out = tmp_path / "retrieved"
        out.mkdir()
        count = 0
        for uid in uids:
            for ds in reader.retrieve_study(uid):  # type: ignore[attr-defined]
                ds.save_as(out / f"{count}.dcm", enforce_file_format=True)
                count += 1
        assert count == len(originals)
        result = verify_folders(originals[0].parents[2], out)
        assert result.outputs == len(originals) and result.needles > 0 and result.leaks == []
        one = instances[0]
        sop = one["00080018"]["Value"][0]
        series_uid = series[0]["0020000E"]["Value"][0]
        ds = reader.retrieve_instance(uids[0], series_uid, sop)  # type: ignore[attr-defined]
        assert ds.SOPInstanceUID == sop and ds.PatientIdentityRemoved == "YES"
        metadata = reader.retrieve_instance_metadata(uids[0], series_uid, sop)  # type: ignore[attr-defined]
        assert metadata["00080018"]["Value"] == [sop]
        pixels = reader.retrieve_bulkdata(metadata["7FE00010"]["BulkDataURI"])  # type: ignore[attr-defined]
        assert pixels[0] == ds.PixelData
        (frame,) = reader.retrieve_instance_frames(uids[0], series_uid, sop, frame_numbers=[1])  # type: ignore[attr-defined]
        assert frame == ds.PixelData
        rendered = reader.retrieve_instance_rendered(  # type: ignore[attr-defined]
            uids[0], series_uid, sop, media_types=("image/png",)
        )
        assert rendered[:8] == b"\x89PNG\r\n\x1a\n"

    def test_store_to_a_study_url(self, gateway: Gateway, originals: list[Path]) -> None:
        writer = client(gateway, "ingest")
        sent = [pydicom.dcmread(path) for path in originals]
        studies: dict[str, list[pydicom.Dataset]] = {}
        for ds in sent:
            studies.setdefault(str(ds.StudyInstanceUID), []).append(ds)
        mine, theirs = studies.values()
        answer = writer.store_instances(datasets=mine[:1])  # type: ignore[attr-defined]
        pseudo = str(answer.RetrieveURL).rsplit("/", 1)[1]
        assert pseudo.startswith("2.25.") and pseudo not in studies
        answer = writer.store_instances(  # type: ignore[attr-defined]
            datasets=[*mine[1:], theirs[0]], study_instance_uid=pseudo
        )
        assert len(answer.ReferencedSOPSequence) == len(mine) - 1
        (failed,) = answer.FailedSOPSequence
        assert failed.FailureReason == 0xA900
        assert failed.ReferencedSOPInstanceUID != theirs[0].SOPInstanceUID
        reader = client(gateway, "read")
        found = reader.search_for_instances(study_instance_uid=pseudo)  # type: ignore[attr-defined]
        assert len(found) == len(mine)

    def test_study_url_needs_the_ingest_role(self, gateway: Gateway, originals: list[Path]) -> None:
        from requests.exceptions import HTTPError

        ds = pydicom.dcmread(originals[0])
        with pytest.raises(HTTPError) as caught:
            client(gateway, "read").store_instances(datasets=[ds], study_instance_uid="2.25.1")  # type: ignore[attr-defined]
        assert caught.value.response.status_code == 403
        anonymous = httpx.post(
            f"{gateway.url}/dicomweb/studies/2.25.1",
            content=b"--x--\r\n",
            headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=x'},
        )
        assert anonymous.status_code == 401

    def test_wrong_role_is_refused(self, gateway: Gateway, originals: list[Path]) -> None:
        from requests.exceptions import HTTPError

        with pytest.raises(HTTPError) as caught:
            client(gateway, "read").store_instances(datasets=[pydicom.dcmread(originals[0])])  # type: ignore[attr-defined]
        assert caught.value.response.status_code == 403

    def test_logs_name_no_identifier(self, gateway: Gateway, originals: list[Path]) -> None:
        httpx.get(
            f"{gateway.url}/dicomweb/studies",
            params={"PatientName": "MUSTERMANN^ERIKA"},
            headers={"Authorization": f"Bearer {gateway.tokens['read']}"},
        )
        deadline = time.monotonic() + 10  # the access line is written once the answer is sent
        text = gateway.log.read_text()
        while "GET /dicomweb/studies 200" not in text and time.monotonic() < deadline:
            time.sleep(0.05)
            text = gateway.log.read_text()
        assert "MUSTERMANN" not in text and "GET /dicomweb/studies 200" in text
        for path in originals:
            original = pydicom.dcmread(path, stop_before_pixels=True)
            assert original.PatientID not in text and original.SOPInstanceUID not in text

    def test_engine_processes_do_not_quote_values_in_the_log(
        self, gateway: Gateway, originals: list[Path]
    ) -> None:
        from pydicom.dataelem import RawDataElement
        from pydicom.tag import Tag
        from pydicom.uid import generate_uid

        ds = pydicom.dcmread(originals[0])
        # a new instance: the archive refuses other content under an archived instance's UID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        # values pydicom finds invalid when the engine reads them back: it would warn, quoting
        tag = Tag(0x00200013)  # Instance Number (kept by the profile, read for the index)
        ds[tag] = RawDataElement(tag, "IS", 10, b"LEAKCANARY", 0, False, True)
        answer = client(gateway, "ingest").store_instances(datasets=[ds])  # type: ignore[attr-defined]
        assert len(answer.ReferencedSOPSequence) == 1
        time.sleep(0.5)  # the engine processes write to the same log
        assert "LEAKCANARY" not in gateway.log.read_text()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    args = ("--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    with running_gateway(tmp_path / "home", TEST_KEY, args=args, scheme="https") as gateway:
        import ssl

        context = ssl.create_default_context(cafile=str(cert))
        answer = httpx.get(f"{gateway.url}/healthz", verify=context, timeout=10)
        assert answer.status_code == 200
        answer = httpx.get(
            f"{gateway.url}/dicomweb/studies",
            headers={"Authorization": f"Bearer {gateway.tokens['read']}"},
            verify=context,
        )
        assert answer.status_code == 200 and answer.json() == []


def test_serve_without_key_material_fails_cleanly(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.web.cliapp", "serve", "--key-file", str(tmp_path / "none")],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "DICOMVEIL_HOME": str(tmp_path / "home"),
            "PYTHONPATH": str(ROOT),
        },
        timeout=60,
    )
    assert done.returncode == 2
    assert "does not exist" in done.stderr and "Traceback" not in done.stderr


def test_deid_never_imports_the_web_stack() -> None:
    code = (
        "import sys; import dicomveil.cli.main, dicomveil.cli.serve, dicomveil.cli.tokens, "
        "dicomveil.cli.deid; bad = [m for m in ('fastapi', 'uvicorn', 'starlette', "
        "'prometheus_client', 'python_multipart') if m in sys.modules]; print(bad); "
        "sys.exit(1 if bad else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stdout + done.stderr
