"""The gateway's ``/api/v1/deidentify`` cleans burned-in text when its policy asks for it
(the same service code as ``deid``)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from benchmarks.pixel_corpus import make_sample, removed, to_dataset

from tests.web.conftest import anyio_backend, auth, home, key_file, tokens  # noqa: F401

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.fixture
def app(home: Path, key_file: Path) -> Iterator[Any]:  # noqa: F811
    from dicomveil.web import Settings, create_app

    application = create_app(Settings(home=home, key_file=key_file, options=("clean-pixel-data",)))
    try:
        yield application
    finally:
        application.state.services.close()


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def test_deidentify_cleans_pixels(
    client: httpx.AsyncClient,
    tokens: dict[str, str],  # noqa: F811
    finder: Any,
) -> None:
    sample = make_sample("gateway", 41, rows=240, columns=320, texts=3, sizes=(12, 14, 18))
    buffer = io.BytesIO()
    to_dataset(sample).save_as(buffer, enforce_file_format=True)
    answer = await client.post(
        "/api/v1/deidentify",
        content=buffer.getvalue(),
        headers={**auth(tokens["ingest"]), "Content-Type": "application/dicom"},
    )
    assert answer.status_code == 200, answer.text
    ds = pydicom.dcmread(io.BytesIO(answer.content))
    assert ds.BurnedInAnnotation == "NO"
    assert "113101" in [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
    after = ds.pixel_array
    assert all(removed(box, sample.mask, sample.pixels[0], after) for box in sample.boxes)
    for value in sample.header.values():
        assert value.encode() not in answer.content
