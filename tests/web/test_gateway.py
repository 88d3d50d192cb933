"""The gateway API: de-identify one posted instance; re-identify (audited, restricted)."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pydicom
import pytest

from dicomveil.pipeline.verify import verify_folders
from dicomveil.web.routes.gateway import STUDY_ID_HEADER, STUDY_UID_HEADER
from dicomveil.web.services import Services
from tests.web.conftest import actor, auth

pytestmark = pytest.mark.anyio

DICOM = {"Content-Type": "application/dicom"}


async def deidentify(client: httpx.AsyncClient, token: str, data: bytes) -> httpx.Response:
    return await client.post("/api/v1/deidentify", content=data, headers={**auth(token), **DICOM})


class TestDeidentify:
    async def test_raw_body(
        self,
        client: httpx.AsyncClient,
        tokens: dict[str, str],
        demo_files: list[Path],
        tmp_path: Path,
        services: Services,
    ) -> None:
        answer = await deidentify(client, tokens["ingest"], demo_files[0].read_bytes())
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/dicom"
        ds = pydicom.dcmread(io.BytesIO(answer.content))
        assert answer.headers[STUDY_UID_HEADER] == ds.StudyInstanceUID
        assert answer.headers[STUDY_ID_HEADER] == ds.StudyID
        out = tmp_path / "out"
        out.mkdir()
        (out / "one.dcm").write_bytes(answer.content)
        single = tmp_path / "single"
        single.mkdir()
        (single / "in.dcm").write_bytes(demo_files[0].read_bytes())
        result = verify_folders(single, out)
        assert result.outputs == 1 and result.needles > 0 and result.leaks == []
        # not archived, but the way back is recorded
        assert services.index.counts().instances == 0
        assert services.vault is not None and services.vault.stats().instances == 1
        # nothing left behind in the spool
        assert list(services.staging.iterdir()) == []

    async def test_multipart_form(
        self, client: httpx.AsyncClient, tokens: dict[str, str], demo_files: list[Path]
    ) -> None:
        files = {"file": ("x.dcm", demo_files[0].read_bytes(), "application/dicom")}
        answer = await client.post(
            "/api/v1/deidentify", files=files, headers=auth(tokens["ingest"])
        )
        assert answer.status_code == 200
        assert pydicom.dcmread(io.BytesIO(answer.content)).PatientIdentityRemoved == "YES"
        wrong = {"other": ("x.dcm", b"abc", "application/dicom")}
        answer = await client.post(
            "/api/v1/deidentify", files=wrong, headers=auth(tokens["ingest"])
        )
        assert answer.status_code == 400

    async def test_same_input_same_pseudonyms(
        self, client: httpx.AsyncClient, tokens: dict[str, str], demo_files: list[Path]
    ) -> None:
        one = await deidentify(client, tokens["ingest"], demo_files[0].read_bytes())
        two = await deidentify(client, tokens["ingest"], demo_files[0].read_bytes())
        assert one.headers[STUDY_ID_HEADER] == two.headers[STUDY_ID_HEADER]
        assert one.content == two.content

    @pytest.mark.parametrize(
        ("body", "status", "code"),
        [
            (b"this is not DICOM at all, just text " * 10, 400, "MalformedInputError"),
            (b"", 400, "BadRequest"),
        ],
    )
    async def test_not_dicom(
        self,
        client: httpx.AsyncClient,
        tokens: dict[str, str],
        body: bytes,
        status: int,
        code: str,
        services: Services,
    ) -> None:
        answer = await deidentify(client, tokens["ingest"], body)
        assert answer.status_code == status
        assert answer.json()["error"]["code"] == code
        assert "Traceback" not in answer.text and str(services.staging) not in answer.text

    async def test_truncated_dicom(
        self, client: httpx.AsyncClient, tokens: dict[str, str], demo_files: list[Path]
    ) -> None:
        data = demo_files[0].read_bytes()
        answer = await deidentify(client, tokens["ingest"], data[: len(data) // 2])
        assert answer.status_code in (400, 422)
        assert answer.json()["error"]["message"]

    async def test_wrong_media_type(
        self, client: httpx.AsyncClient, tokens: dict[str, str]
    ) -> None:
        answer = await client.post(
            "/api/v1/deidentify",
            content=b"{}",
            headers={**auth(tokens["ingest"]), "Content-Type": "application/json"},
        )
        assert answer.status_code == 415

    async def test_oversized_instance(
        self, home: Path, key_file: Path, tokens: dict[str, str], demo_files: list[Path]
    ) -> None:
        from dicomveil.web import Settings, create_app

        app = create_app(Settings(home=home, key_file=key_file, max_instance_bytes=1000))
        try:
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                answer = await deidentify(client, tokens["ingest"], demo_files[0].read_bytes())
            assert answer.status_code == 413
            assert app.state.services.vault.stats().instances == 0
        finally:
            app.state.services.close()


class TestReidentify:
    async def test_lookup_by_pseudonymous_study(
        self,
        client: httpx.AsyncClient,
        tokens: dict[str, str],
        demo_files: list[Path],
        services: Services,
    ) -> None:
        answer = await deidentify(client, tokens["ingest"], demo_files[0].read_bytes())
        study = answer.headers[STUDY_ID_HEADER]
        found = await client.post(
            "/api/v1/reidentify",
            json={"study": study, "purpose": "report returned"},
            headers=auth(tokens["reidentify"]),
        )
        assert found.status_code == 200
        body = found.json()
        original = pydicom.dcmread(demo_files[0], stop_before_pixels=True)
        assert body["found"] is True
        (match,) = body["studies"]
        assert match["original"]["PatientID"] == original.PatientID
        assert match["original"]["StudyInstanceUID"] == original.StudyInstanceUID
        assert match["pseudonymous"]["StudyID"] == study
        *_, last, attempt = services.audit.entries()
        assert attempt.event == "reid.request" and attempt.details["status"] == 200
        assert last.event == "reid.lookup"
        assert last.actor == actor(services.settings.home, "reidentify")
        assert last.details["purpose"] == "report returned"
        assert original.PatientID not in str(last.details)

    async def test_purpose_required_and_audited(
        self, client: httpx.AsyncClient, tokens: dict[str, str], services: Services
    ) -> None:
        answer = await client.post(
            "/api/v1/reidentify", json={"study": "X1"}, headers=auth(tokens["reidentify"])
        )
        assert answer.status_code == 403
        assert "no purpose" in answer.json()["error"]["message"]
        *_, denied, attempt = services.audit.entries()
        assert denied.event == "access.denied" and attempt.event == "reid.request"
        assert attempt.outcome == "denied" and attempt.details["status"] == 403

    @pytest.mark.parametrize(
        "body",
        [
            {"purpose": "p"},
            {"purpose": "p", "study": "a", "patient": "b"},
            {"purpose": "p", "study": ""},
            {"purpose": "p", "study": "a", "extra": 1},
        ],
    )
    async def test_exactly_one_identifier(
        self, client: httpx.AsyncClient, tokens: dict[str, str], body: dict[str, object]
    ) -> None:
        answer = await client.post(
            "/api/v1/reidentify", json=body, headers=auth(tokens["reidentify"])
        )
        assert answer.status_code == 400

    async def test_not_found(self, client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
        answer = await client.post(
            "/api/v1/reidentify",
            json={"patient": "NOPE", "purpose": "check"},
            headers=auth(tokens["reidentify"]),
        )
        assert answer.status_code == 200 and answer.json() == {"found": False, "studies": []}

    async def test_returned_object(
        self, client: httpx.AsyncClient, tokens: dict[str, str], demo_files: list[Path]
    ) -> None:
        answer = await deidentify(client, tokens["ingest"], demo_files[0].read_bytes())
        back = await client.post(
            "/api/v1/reidentify/instance",
            content=answer.content,
            headers={
                **auth(tokens["reidentify"]),
                **DICOM,
                "X-Dicomveil-Purpose": "result to the desk",
            },
        )
        assert back.status_code == 200, back.text
        ds = pydicom.dcmread(io.BytesIO(back.content))
        original = pydicom.dcmread(demo_files[0], stop_before_pixels=True)
        assert ds.PatientID == original.PatientID
        assert ds.StudyInstanceUID == original.StudyInstanceUID
        unknown = await client.post(
            "/api/v1/reidentify/instance",
            content=demo_files[0].read_bytes(),
            headers={**auth(tokens["reidentify"]), **DICOM, "X-Dicomveil-Purpose": "x"},
        )
        assert unknown.status_code == 404
