"""Orthanc as a peer PACS: it pushes studies to the gateway over DICOMweb and fetches them back.

Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) runs on free loopback ports with our
gateway configured as a DICOMweb server, the bearer token in an HTTP header. See
``shared/TESTING.md`` §6.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest

from dicomveil.demo import write_demo_study
from dicomveil.pipeline.verify import verify_folders
from tests.web.gateway_server import Gateway, running_gateway
from tests.web.orthanc_server import running_orthanc
from tests.web.support import TEST_KEY

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("gw") / "home", TEST_KEY) as running:
        yield running


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, gateway: Gateway) -> Iterator[str]:
    """Orthanc with the gateway as DICOMweb servers ``veil`` (an ingest token: STOW-RS) and
    ``veil-read`` (a read token: QIDO-RS, WADO-RS), one per duty; yields its REST base URL."""
    servers = {
        name: {
            "Url": f"{gateway.url}/dicomweb/",
            "HttpHeaders": {"Authorization": f"Bearer {gateway.tokens[role]}"},
        }
        for name, role in (("veil", "ingest"), ("veil-read", "read"))
    }
    with running_orthanc(tmp_path_factory.mktemp("orthanc"), servers) as url:
        yield url


def _post(url: str, body: Any) -> Any:
    answer = httpx.post(url, json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_orthanc_pushes_and_fetches_back(orthanc: str, gateway: Gateway, tmp_path: Path) -> None:
    originals = write_demo_study(
        tmp_path / "originals", patients=2, series_per_study=2, images_per_series=2, seed=11
    )
    for path in originals:
        answer = httpx.post(f"{orthanc}/instances", content=path.read_bytes(), timeout=30)
        assert answer.status_code == 200, answer.text
    studies = httpx.get(f"{orthanc}/studies").json()
    assert len(studies) == 2
    # Orthanc pushes both studies to the gateway (STOW-RS through its DICOMweb client)
    _post(f"{orthanc}/dicom-web/servers/veil/stow", {"Resources": studies, "Synchronous": True})
    # and searches the gateway (QIDO-RS) ...
    found = _post(f"{orthanc}/dicom-web/servers/veil-read/qido", {"Uri": "/studies"})
    # (Orthanc reformats the answer: "Value" holds the value itself)
    pseudonymous = sorted(str(item["0020000D"]["Value"]) for item in found)
    assert len(pseudonymous) == 2
    originals_uids = {
        pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID for p in originals
    }
    assert not originals_uids & set(pseudonymous)
    # ... and fetches the de-identified studies back (WADO-RS)
    for uid in pseudonymous:
        _post(f"{orthanc}/dicom-web/servers/veil-read/retrieve", {"Resources": [{"Study": uid}]})
    assert len(httpx.get(f"{orthanc}/studies").json()) == 4
    out = tmp_path / "fetched"
    out.mkdir()
    fetched = 0
    for uid in pseudonymous:
        (study,) = httpx.post(f"{orthanc}/tools/lookup", content=uid).json()
        for instance in httpx.get(f"{orthanc}/studies/{study['ID']}/instances").json():
            data = httpx.get(f"{orthanc}/instances/{instance['ID']}/file").content
            (out / f"{fetched}.dcm").write_bytes(data)
            fetched += 1
    assert fetched == len(originals)
    result = verify_folders(originals[0].parents[2], out)
    assert result.outputs == len(originals) and result.needles > 0 and result.leaks == []
    # what the gateway archived verifies too
    archive = gateway.home / "archive"
    stored = [p for p in archive.rglob("*.dcm") if ".dicomveil-" not in str(p)]
    assert len(stored) == len(originals)
    assert verify_folders(originals[0].parents[2], archive).leaks == []
