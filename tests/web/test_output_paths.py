"""The gateway writes nothing outside its folders, whatever identifiers an upload lacks or
carries (issue 11, items 1 and 12): ``/api/v1/deidentify`` and STOW-RS on real files without
PatientID or StudyID, and retained UIDs that are paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from fastapi import FastAPI
from pydicom.data import get_testdata_file

from dicomveil.web import Settings, create_app
from tests.pipeline.escapes import identifier_less_inputs, nothing_written_outside
from tests.web.conftest import auth
from tests.web.support import related_body

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::UserWarning")]

DICOM = {"Content-Type": "application/dicom"}


async def _stow(client: httpx.AsyncClient, token: str, parts: list[bytes]) -> httpx.Response:
    content_type, body = related_body(parts)
    return await client.post(
        "/dicomweb/studies", content=body, headers={**auth(token), "Content-Type": content_type}
    )


def _stored(answer: httpx.Response) -> tuple[int, int]:
    """How many parts a STOW-RS answer lists as stored and as failed."""
    body = answer.json()
    return (
        len(body.get("00081199", {}).get("Value", [])),
        len(body.get("00081198", {}).get("Value", [])),
    )


async def test_deidentify_without_identifiers(
    client: httpx.AsyncClient, tokens: dict[str, str], tmp_path: Path, home: Path
) -> None:
    inputs = identifier_less_inputs(tmp_path / "in")
    with nothing_written_outside(tmp_path, home):
        for path in inputs:
            answer = await client.post(
                "/api/v1/deidentify",
                content=path.read_bytes(),
                headers={**auth(tokens["ingest"]), **DICOM},
            )
            assert answer.status_code in (200, 409, 422), answer.text
    assert not (tmp_path / "in" / "out").exists()


async def test_stow_without_identifiers(
    client: httpx.AsyncClient, tokens: dict[str, str], tmp_path: Path, home: Path
) -> None:
    inputs = identifier_less_inputs(tmp_path / "in")
    with nothing_written_outside(tmp_path, home):
        answer = await _stow(client, tokens["ingest"], [p.read_bytes() for p in inputs])
    assert answer.status_code in (200, 202, 409), answer.text
    stored, failed = _stored(answer)
    assert stored >= 5 and stored + failed == len(inputs)


@pytest.fixture
def retaining_app(home: Path, key_file: Path) -> Iterator[FastAPI]:
    application = create_app(Settings(home=home, key_file=key_file, options=("retain-uids",)))
    try:
        yield application
    finally:
        application.state.services.close()


async def test_stow_with_retained_uids_that_are_paths(
    retaining_app: FastAPI, tokens: dict[str, str], tmp_path: Path, home: Path
) -> None:
    parts = []
    for name, uid in (("CT_small.dcm", "../../../../../zqx"), ("MR_small.dcm", "1.2\x00.3")):
        ds = pydicom.dcmread(get_testdata_file(name))
        ds.SeriesInstanceUID = uid
        path = tmp_path / f"bad-{name}"
        ds.save_as(path)
        parts.append(path.read_bytes())
    parts.append(Path(get_testdata_file("rtplan.dcm")).read_bytes())  # a valid one
    transport = httpx.ASGITransport(app=retaining_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        with nothing_written_outside(tmp_path, home):
            answer = await _stow(client, tokens["ingest"], parts)
            single = await client.post(
                "/api/v1/deidentify", content=parts[0], headers={**auth(tokens["ingest"]), **DICOM}
            )
    assert answer.status_code in (200, 202, 409), answer.text
    assert _stored(answer) == (1, 2)
    assert single.status_code >= 400 and "zqx" not in single.text
    assert "zqx" not in answer.text
