"""STOW-RS: parts that share a SOP Instance UID, and re-STOW of archived instances.

Every part gets its own answer whichever engine process finishes first: identical repeats
are stored once and answered as stored, different content under one SOP Instance UID is
refused with FailureReason 0111H (in the request, or against the archive) unless the
``replace_instances`` setting is on; conflicts and replacements are audited.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pydicom
import pytest

from dicomveil.index import StoredInstance
from dicomveil.web import Settings, create_app
from dicomveil.web.services import Services
from tests.web.conftest import auth
from tests.web.support import first, related_body

pytestmark = pytest.mark.anyio

DUPLICATE = 0x0111


def _changed(path: Path) -> bytes:
    """The file with other pixel values, same UIDs."""
    ds = pydicom.dcmread(path)
    pixels = bytearray(ds.PixelData)
    pixels[:64] = bytes(64 - i for i in range(64))
    ds.PixelData = bytes(pixels)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


async def _stow(client: httpx.AsyncClient, token: str, parts: list[bytes]) -> httpx.Response:
    content_type, body = related_body(parts)
    return await client.post(
        "/dicomweb/studies", content=body, headers={**auth(token), "Content-Type": content_type}
    )


def _answers(answer: httpx.Response) -> tuple[list[str], list[tuple[str, int]]]:
    body = answer.json()
    stored = [str(first(i["00081155"])) for i in body.get("00081199", {}).get("Value", [])]
    failed = [
        (str(first(i["00081155"])) if "00081155" in i else "", int(str(first(i["00081197"]))))
        for i in body.get("00081198", {}).get("Value", [])
    ]
    return stored, failed


def _conflicts(services: Services) -> list[str]:
    return [
        str(e.details.get("action"))
        for e in services.audit.entries()
        if e.event == "instance_conflict"
    ]


async def test_repeated_parts_answer_deterministically(
    client: httpx.AsyncClient, tokens: dict[str, str], demo_files: list[Path], services: Services
) -> None:
    one, other = demo_files[0], demo_files[1]
    parts = [one.read_bytes(), one.read_bytes(), _changed(one), other.read_bytes(), b"\0" * 4096]
    for _ in range(3):
        answer = await _stow(client, tokens["ingest"], parts)
        assert answer.status_code == 202, answer.text
        stored, failed = _answers(answer)
        assert len(stored) == 3 and stored[0] == stored[1] != stored[2]
        assert [code for _uid, code in failed] == [DUPLICATE, 0xC000]
        assert failed[0][0] == stored[0]  # the refused part is named by its pseudonymous UID
        assert "299 dicomveil" in answer.headers["warning"]
    assert services.index.counts().instances == 2
    assert "refused" in _conflicts(services)


async def test_restow_same_content_is_idempotent_other_content_refused(
    client: httpx.AsyncClient, tokens: dict[str, str], demo_files: list[Path], services: Services
) -> None:
    path = demo_files[0]
    first_answer = await _stow(client, tokens["ingest"], [path.read_bytes()])
    assert first_answer.status_code == 200
    (uid,) = _answers(first_answer)[0]
    instance = _archived(first_answer, services)
    again = await _stow(client, tokens["ingest"], [path.read_bytes()])
    assert again.status_code == 200, again.text
    changed = await _stow(client, tokens["ingest"], [_changed(path)])
    assert changed.status_code == 409, changed.text
    assert _answers(changed)[1] == [(uid, DUPLICATE)]
    assert "warning" in changed.headers
    (after,) = services.index.instances(instance.study_instance_uid, None, uid)
    assert after.sha256 == instance.sha256  # the archived object was not replaced
    assert services.store.get_bytes(after.storage_key)
    assert _conflicts(services) == ["refused"]


def _archived(answer: httpx.Response, services: Services) -> StoredInstance:
    """The archived instance the (one) RetrieveURL of a STOW-RS answer names."""
    (item,) = answer.json()["00081199"]["Value"]
    parts = str(first(item["00081190"])).split("/dicomweb/", 1)[1].split("/")
    (found,) = services.index.instances(parts[1], parts[3], parts[5])
    return found


@pytest.fixture
async def replacing(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    app = create_app(dataclasses.replace(settings, replace_instances=True))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c, app.state.services
    finally:
        app.state.services.close()


async def test_replace_setting_replaces_and_audits(
    replacing: tuple[httpx.AsyncClient, Services], tokens: dict[str, str], demo_files: list[Path]
) -> None:
    client, services = replacing
    path = demo_files[0]
    assert (await _stow(client, tokens["ingest"], [path.read_bytes()])).status_code == 200
    answer = await _stow(client, tokens["ingest"], [_changed(path)])
    assert answer.status_code == 200, answer.text
    after = _archived(answer, services)
    stored = pydicom.dcmread(io.BytesIO(services.store.get_bytes(after.storage_key)))
    assert bytes(stored.PixelData)[:64] == bytes(64 - i for i in range(64))
    assert _conflicts(services) == ["replaced"]


def test_sop_uid_scan_agrees_with_pydicom() -> None:
    """The plain scan of a file's head finds the SOP Instance UID pydicom reads, or says it
    cannot tell (then pydicom is asked): never another UID."""
    import warnings

    from pydicom.data import get_testdata_files

    from dicomveil.pipeline.ingest_work import HEAD_BYTES, scan_sop_instance_uid

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # files that must be downloaded are left out
        names = get_testdata_files("*.dcm")
    found = 0
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                expected = str(
                    pydicom.dcmread(name, stop_before_pixels=True).get("SOPInstanceUID", "")
                )
            except Exception:  # noqa: BLE001 - files pydicom cannot read: no claim
                continue
        with open(name, "rb") as handle:
            scanned = scan_sop_instance_uid(handle.read(HEAD_BYTES))
        assert scanned is None or scanned == expected, name
        found += scanned is not None
    assert found > 50
