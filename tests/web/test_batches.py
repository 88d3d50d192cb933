"""Batches over HTTP: uploads, zips, server-side folders under the import root only."""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI

from dicomveil.web import Settings, create_app
from tests.web.conftest import auth

pytestmark = pytest.mark.anyio


@pytest.fixture
def import_root(tmp_path: Path) -> Path:
    root = tmp_path / "imports"
    root.mkdir()
    return root


@pytest.fixture
def batch_app(settings: Settings, import_root: Path, tmp_path: Path) -> Iterator[FastAPI]:
    from dataclasses import replace

    app = create_app(
        replace(settings, import_root=import_root, batch_url=f"file://{tmp_path / 'outbox'}")
    )
    try:
        yield app
    finally:
        app.state.services.close()


@pytest.fixture
async def bclient(batch_app: FastAPI) -> Any:
    transport = httpx.ASGITransport(app=batch_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def finished(client: httpx.AsyncClient, token: str, batch_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = await client.get(f"/api/v1/batches/{batch_id}", headers=auth(token))
        assert answer.status_code == 200
        status: dict[str, Any] = answer.json()
        if status["state"] in ("complete", "stopped", "failed"):
            return status
        await anyio.sleep(0.1)
    raise AssertionError("the batch did not finish")


class TestCreate:
    async def test_uploaded_files(
        self,
        bclient: httpx.AsyncClient,
        tokens: dict[str, str],
        demo_files: list[Path],
        tmp_path: Path,
    ) -> None:
        files = [
            ("files", (f"{i}.dcm", p.read_bytes(), "application/dicom"))
            for i, p in enumerate(demo_files)
        ]
        answer = await bclient.post(
            "/api/v1/batches",
            files=files,
            data={"priority": "STAT"},
            headers=auth(tokens["ingest"]),
        )
        assert answer.status_code == 202, answer.text
        batch_id = answer.json()["batch_id"]
        assert answer.headers["location"] == f"/api/v1/batches/{batch_id}"
        status = await finished(bclient, tokens["ingest"], batch_id)
        assert status["state"] == "complete" and status["priority"] == "STAT"
        assert status["images"] == 12 and status["studies"] == 2
        assert "staging" not in status and "quarantine" not in status
        manifest = await bclient.get(
            f"/api/v1/batches/{batch_id}/manifest", headers=auth(tokens["ingest"])
        )
        assert manifest.status_code == 200
        body = manifest.json()
        assert body["batch_id"] == batch_id and body["total_images"] == 12
        text = manifest.text + json.dumps(status)
        for path in demo_files:  # no patient name or id (they are in the file names)
            assert path.parent.parent.name.split("_")[0] not in text
        listed = await bclient.get("/api/v1/batches", headers=auth(tokens["ingest"]))
        assert [b["batch_id"] for b in listed.json()] == [batch_id]

    async def test_zip(
        self, bclient: httpx.AsyncClient, tokens: dict[str, str], demo_files: list[Path]
    ) -> None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as bundle:
            for i, path in enumerate(demo_files[:4]):
                bundle.write(path, f"study/{i}.dcm")
        answer = await bclient.post(
            "/api/v1/batches",
            files={"zip": ("s.zip", buffer.getvalue(), "application/zip")},
            headers=auth(tokens["ingest"]),
        )
        assert answer.status_code == 202, answer.text
        status = await finished(bclient, tokens["ingest"], answer.json()["batch_id"])
        assert status["state"] == "complete" and status["images"] == 4

    @pytest.mark.parametrize("name", ["../evil.dcm", "/etc/evil.dcm"])
    async def test_zip_escape_refused(
        self, bclient: httpx.AsyncClient, tokens: dict[str, str], name: str, tmp_path: Path
    ) -> None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as bundle:
            bundle.writestr(name, b"x")
        answer = await bclient.post(
            "/api/v1/batches",
            files={"zip": ("s.zip", buffer.getvalue(), "application/zip")},
            headers=auth(tokens["ingest"]),
        )
        assert answer.status_code == 400
        assert not (tmp_path / "evil.dcm").exists()

    async def test_server_side_folder(
        self,
        bclient: httpx.AsyncClient,
        tokens: dict[str, str],
        demo_files: list[Path],
        import_root: Path,
    ) -> None:
        target = import_root / "ward" / "today"
        target.mkdir(parents=True)
        for i, path in enumerate(demo_files[:3]):
            (target / f"{i}.dcm").write_bytes(path.read_bytes())
        answer = await bclient.post(
            "/api/v1/batches", json={"folder": "ward/today", "priority": "URGENT"},
            headers=auth(tokens["ingest"]),
        )  # fmt: skip
        assert answer.status_code == 202, answer.text
        status = await finished(bclient, tokens["ingest"], answer.json()["batch_id"])
        assert status["state"] == "complete" and status["images"] == 3
        assert status["priority"] == "URGENT"
        assert len(list(target.iterdir())) == 3  # the originals stay where they are


class TestRefused:
    @pytest.mark.parametrize(
        "folder", ["../outside", "ward/../../outside", "/etc", "link-out", "ward/linked"]
    )
    async def test_outside_the_import_root(
        self,
        bclient: httpx.AsyncClient,
        tokens: dict[str, str],
        import_root: Path,
        tmp_path: Path,
        folder: str,
    ) -> None:
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "secret.dcm").write_bytes(b"x")
        (import_root / "ward").mkdir()
        os.symlink(outside, import_root / "link-out")
        os.symlink(outside / "secret.dcm", import_root / "ward" / "linked")
        answer = await bclient.post(
            "/api/v1/batches", json={"folder": folder}, headers=auth(tokens["ingest"])
        )
        assert answer.status_code == 403, answer.text
        assert str(tmp_path) not in answer.text
        assert not (import_root.parent / "home" / "batches").exists() or not any(
            (import_root.parent / "home" / "batches").iterdir()
        )

    async def test_no_import_root(self, client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
        answer = await client.post(
            "/api/v1/batches", json={"folder": "x"}, headers=auth(tokens["ingest"])
        )
        assert answer.status_code == 403

    @pytest.mark.parametrize(
        ("body", "status"),
        [({"folder": "missing"}, 400), ({"folder": "ward", "priority": "LATER"}, 400), ({}, 400)],
    )
    async def test_bad_requests(
        self,
        bclient: httpx.AsyncClient,
        tokens: dict[str, str],
        import_root: Path,
        body: dict[str, str],
        status: int,
    ) -> None:
        (import_root / "ward").mkdir()
        (import_root / "ward" / "a.dcm").write_bytes(b"x")
        answer = await bclient.post("/api/v1/batches", json=body, headers=auth(tokens["ingest"]))
        assert answer.status_code == status

    async def test_unknown_and_malformed_ids(
        self, bclient: httpx.AsyncClient, tokens: dict[str, str]
    ) -> None:
        for batch_id in ("01ARZ3NDEKTSV4RRFFQ69G5FAV", "..%2F..%2Fetc", "x"):
            answer = await bclient.get(
                f"/api/v1/batches/{batch_id}", headers=auth(tokens["ingest"])
            )
            assert answer.status_code == 404
            answer = await bclient.get(
                f"/api/v1/batches/{batch_id}/manifest", headers=auth(tokens["ingest"])
            )
            assert answer.status_code == 404

    async def test_empty_upload(self, bclient: httpx.AsyncClient, tokens: dict[str, str]) -> None:
        answer = await bclient.post(
            "/api/v1/batches", files={"priority": (None, "STAT")}, headers=auth(tokens["ingest"])
        )
        assert answer.status_code == 400
