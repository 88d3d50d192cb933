"""STOW-RS: instances are de-identified on the way in, stored, recorded and indexed."""

from __future__ import annotations

from pathlib import Path

import httpx
import pydicom
import pytest

from dicomveil.pipeline.verify import verify_folders
from dicomveil.storage import FileBlobStore
from dicomveil.web import Settings, create_app
from dicomveil.web.services import Services
from tests.web.conftest import actor, auth
from tests.web.support import DICOM_JSON, files_bytes, first, related_body, split_related

pytestmark = pytest.mark.anyio


async def stow(
    client: httpx.AsyncClient, token: str, parts: list[bytes], study: str | None = None
) -> httpx.Response:
    content_type, body = related_body(parts)
    url = "/dicomweb/studies" if study is None else f"/dicomweb/studies/{study}"
    return await client.post(
        url, content=body, headers={**auth(token), "Content-Type": content_type}
    )


def by_study(paths: list[Path]) -> dict[str, list[Path]]:
    """The original files grouped by their (original) Study Instance UID."""
    groups: dict[str, list[Path]] = {}
    for path in paths:
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)
        groups.setdefault(uid, []).append(path)
    return groups


def archived(services: Services) -> list[Path]:
    store = services.store
    assert isinstance(store, FileBlobStore)
    return sorted(p for p in store.root.rglob("*.dcm") if ".dicomveil-" not in str(p))


class TestStore:
    async def test_all_stored_and_deidentified(
        self,
        client: httpx.AsyncClient,
        tokens: dict[str, str],
        demo_files: list[Path],
        services: Services,
    ) -> None:
        answer = await stow(client, tokens["ingest"], files_bytes(demo_files))
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith(DICOM_JSON)
        body = answer.json()
        stored = body["00081199"]["Value"]
        assert len(stored) == len(demo_files) and "00081198" not in body
        item = stored[0]
        assert first(item["00081150"]) == "1.2.840.10008.5.1.4.1.1.2"
        assert str(first(item["00081155"])).startswith("2.25.")
        assert str(first(item["00081190"])).startswith("http://testserver/dicomweb/studies/2.25.")
        counts = services.index.counts()
        assert (counts.patients, counts.studies, counts.instances) == (2, 2, 12)
        # only de-identified data was stored: no identifying value of the originals in it
        files = archived(services)
        assert len(files) == 12
        result = verify_folders(demo_files[0].parents[2], files[0].parents[3])
        assert result.originals == 12 and result.outputs == 12 and result.needles > 0
        assert result.leaks == []
        # the answer itself names nothing of the originals
        for path in demo_files:
            assert path.parent.parent.name.split("_")[-1] not in answer.text

    async def test_same_instances_again_are_not_duplicated(
        self,
        client: httpx.AsyncClient,
        tokens: dict[str, str],
        demo_files: list[Path],
        services: Services,
    ) -> None:
        parts = files_bytes(demo_files[:3])
        assert (await stow(client, tokens["ingest"], parts)).status_code == 200
        assert (await stow(client, tokens["ingest"], parts)).status_code == 200
        assert services.index.counts().instances == 3
        assert len(archived(services)) == 3

    async def test_way_back_recorded(
        self,
        client: httpx.AsyncClient,
        tokens: dict[str, str],
        demo_files: list[Path],
        services: Services,
    ) -> None:
        await stow(client, tokens["ingest"], files_bytes(demo_files[:1]))
        assert services.vault is not None
        assert services.vault.stats().instances == 1
        events = [entry.event for entry in services.audit.entries()]
        assert events == ["deid.run.start", "deid.file", "deid.run.end"]
        actors = {entry.actor for entry in services.audit.entries()}
        assert actors == {actor(services.settings.home, "ingest")}


class TestFailures:
    async def test_partial_failure_is_202(
        self,
        client: httpx.AsyncClient,
        tokens: dict[str, str],
        demo_files: list[Path],
        services: Services,
    ) -> None:
        answer = await stow(client, tokens["ingest"], [*files_bytes(demo_files[:2]), b"not dicom"])
        assert answer.status_code == 202
        body = answer.json()
        assert len(body["00081199"]["Value"]) == 2
        (failed,) = body["00081198"]["Value"]
        assert first(failed["00081197"]) == 0xC000
        assert services.index.counts().instances == 2

    async def test_all_failed_is_409(
        self, client: httpx.AsyncClient, tokens: dict[str, str], services: Services
    ) -> None:
        answer = await stow(client, tokens["ingest"], [b"DICM nothing", b"\x00" * 300])
        assert answer.status_code == 409
        assert len(answer.json()["00081198"]["Value"]) == 2
        assert services.index.counts().instances == 0
        assert archived(services) == []

    async def test_unsupported_part_type_reported(
        self, client: httpx.AsyncClient, tokens: dict[str, str], demo_files: list[Path]
    ) -> None:
        content_type, body = related_body(
            [demo_files[0].read_bytes(), ("application/dicom+json", b"[]")]
        )
        answer = await client.post(
            "/dicomweb/studies",
            content=body,
            headers={**auth(tokens["ingest"]), "Content-Type": content_type},
        )
        assert answer.status_code == 202
        assert len(answer.json()["00081198"]["Value"]) == 1

    async def test_truncated_multipart_stores_nothing(
        self,
        client: httpx.AsyncClient,
        tokens: dict[str, str],
        demo_files: list[Path],
        services: Services,
    ) -> None:
        content_type, body = related_body(files_bytes(demo_files[:3]))
        answer = await client.post(
            "/dicomweb/studies",
            content=body[: len(body) - 40],
            headers={**auth(tokens["ingest"]), "Content-Type": content_type},
        )
        assert answer.status_code == 400
        assert "truncated" in answer.json()["error"]["message"]
        assert services.index.counts().instances == 0 and archived(services) == []
        assert services.vault is not None and services.vault.stats().instances == 0

    @pytest.mark.parametrize(
        ("content_type", "status"),
        [
            ("application/json", 415),
            ('multipart/related; type="application/dicom+xml"; boundary=x', 415),
            ('multipart/related; type="application/dicom"', 400),
            ("multipart/related; boundary=abc", 400),
        ],
    )
    async def test_bad_content_type(
        self,
        client: httpx.AsyncClient,
        tokens: dict[str, str],
        content_type: str,
        status: int,
        services: Services,
    ) -> None:
        answer = await client.post(
            "/dicomweb/studies",
            content=b"--abc\r\n\r\nxyz\r\n",
            headers={**auth(tokens["ingest"]), "Content-Type": content_type},
        )
        assert answer.status_code == status
        assert set(answer.json()) == {"error"}
        assert services.index.counts().instances == 0

    async def test_oversized_body_stores_nothing(
        self,
        home: Path,
        key_file: Path,
        tokens: dict[str, str],
        demo_files: list[Path],
    ) -> None:
        from dicomveil.web import Settings, create_app

        small = create_app(Settings(home=home, key_file=key_file, max_body_bytes=20_000))
        try:
            transport = httpx.ASGITransport(app=small, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                answer = await stow(client, tokens["ingest"], files_bytes(demo_files[:4]))
                assert answer.status_code == 413
                # also when the length is not declared up front (streamed body)
                content_type, body = related_body(files_bytes(demo_files[:4]))

                async def chunks() -> object:
                    for start in range(0, len(body), 4096):
                        yield body[start : start + 4096]

                answer = await client.post(
                    "/dicomweb/studies",
                    content=chunks(),  # type: ignore[arg-type]
                    headers={**auth(tokens["ingest"]), "Content-Type": content_type},
                )
                assert answer.status_code == 413
            services = small.state.services
            assert services.index.counts().instances == 0 and archived(services) == []
        finally:
            small.state.services.close()


async def first_stored(client: httpx.AsyncClient, token: str, path: Path) -> str:
    """Store one instance through ``/studies``; return its pseudonymous study UID."""
    answer = await stow(client, token, files_bytes([path]))
    assert answer.status_code == 200
    return str(first(answer.json()["00081190"])).rsplit("/", 1)[1]


class TestStudyUrl:
    """STOW-RS to ``/studies/{study}``: only instances of that (pseudonymous) study."""

    async def test_other_study_refused_the_rest_stored(
        self,
        client: httpx.AsyncClient,
        tokens: dict[str, str],
        demo_files: list[Path],
        services: Services,
    ) -> None:
        (first_study, mine), (_, theirs) = by_study(demo_files).items()
        pseudo = await first_stored(client, tokens["ingest"], mine[0])
        assert pseudo.startswith("2.25.") and pseudo != first_study

        answer = await stow(client, tokens["ingest"], files_bytes([*mine[1:], theirs[0]]), pseudo)
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert len(body["00081199"]["Value"]) == len(mine) - 1
        assert str(first(body["00081190"])).endswith(f"/dicomweb/studies/{pseudo}")
        (failed,) = body["00081198"]["Value"]
        assert first(failed["00081197"]) == 0xA900
        assert first(failed["00081150"]) == "1.2.840.10008.5.1.4.1.1.2"
        refused = str(first(failed["00081155"]))
        other = pydicom.dcmread(theirs[0], stop_before_pixels=True)
        assert refused.startswith("2.25.") and refused != other.SOPInstanceUID
        # nothing of the other study was stored, recorded for the way back or indexed
        assert services.index.counts().studies == 1
        assert services.index.counts().instances == len(mine)
        assert len(archived(services)) == len(mine)
        assert services.vault is not None and services.vault.stats().instances == len(mine)
        errors = [
            e.details.get("error") for e in services.audit.entries() if e.event == "deid.file"
        ]
        assert errors.count("StudyMismatch") == 1
        # the answer names nothing of the originals
        for path in theirs[:1] + mine:
            original = pydicom.dcmread(path, stop_before_pixels=True)
            for value in (original.PatientID, str(original.PatientName), original.StudyInstanceUID):
                assert value not in answer.text

    async def test_only_other_studies_is_409(
        self,
        client: httpx.AsyncClient,
        tokens: dict[str, str],
        demo_files: list[Path],
        services: Services,
    ) -> None:
        (_, mine), (_, theirs) = by_study(demo_files).items()
        pseudo = await first_stored(client, tokens["ingest"], mine[0])
        answer = await stow(client, tokens["ingest"], files_bytes(theirs), pseudo)
        assert answer.status_code == 409
        reasons = [first(item["00081197"]) for item in answer.json()["00081198"]["Value"]]
        assert reasons == [0xA900] * len(theirs)
        assert services.index.counts().instances == 1 and len(archived(services)) == 1

    async def test_stored_bytes_hold_no_planted_phi(
        self,
        client: httpx.AsyncClient,
        tokens: dict[str, str],
        demo_files: list[Path],
        services: Services,
    ) -> None:
        (_, mine), _ = by_study(demo_files).items()
        pseudo = await first_stored(client, tokens["ingest"], mine[0])
        answer = await stow(client, tokens["ingest"], files_bytes(mine[1:]), pseudo)
        assert answer.status_code == 200
        files = archived(services)
        assert len(files) == len(mine)
        result = verify_folders(demo_files[0].parents[2], files[0].parents[3])
        assert result.outputs == len(mine) and result.needles > 0
        assert result.leaks == []
        stored = b"".join(path.read_bytes() for path in files)
        for path in mine:
            original = pydicom.dcmread(path, stop_before_pixels=True)
            for value in (original.PatientID, str(original.PatientName)):
                assert value.encode() not in stored

    async def test_unknown_study_url_takes_nothing(
        self,
        client: httpx.AsyncClient,
        tokens: dict[str, str],
        demo_files: list[Path],
        services: Services,
    ) -> None:
        answer = await stow(client, tokens["ingest"], files_bytes(demo_files[:2]), "2.25.999")
        assert answer.status_code == 409
        assert services.index.counts().instances == 0 and archived(services) == []


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


class TestArchiveLayout:
    async def test_one_file_per_instance_and_wado_returns_its_bytes(
        self,
        client: httpx.AsyncClient,
        tokens: dict[str, str],
        demo_files: list[Path],
        services: Services,
    ) -> None:
        answer = await stow(client, tokens["ingest"], files_bytes(demo_files))
        assert answer.status_code == 200, answer.text
        store = services.store
        assert isinstance(store, FileBlobStore)
        files = all_files(store.root)
        assert files == archived(services) and len(files) == len(demo_files)
        assert not (store.root / ".dicomveil-meta").exists()
        on_disk = {path.read_bytes() for path in files}
        retrieved = []
        for item in answer.json()["00081199"]["Value"]:
            url = str(first(item["00081190"])).removeprefix("http://testserver")
            got = await client.get(url, headers=auth(tokens["read"]))
            assert got.status_code == 200, got.text
            (part,) = split_related(got.headers["content-type"], got.content)
            assert part[0] == "application/dicom"
            retrieved.append(part[1])
        assert set(retrieved) == on_disk and len(retrieved) == len(on_disk)

    async def test_sidecars_on_request(
        self, home: Path, key_file: Path, tokens: dict[str, str], demo_files: list[Path]
    ) -> None:
        app = create_app(Settings(home=home, key_file=key_file, archive_sidecars=True))
        try:
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                answer = await stow(c, tokens["ingest"], files_bytes(demo_files[:2]))
            assert answer.status_code == 200, answer.text
            services: Services = app.state.services
            store = services.store
            assert isinstance(store, FileBlobStore)
            sidecars = [p for p in all_files(store.root) if ".dicomveil-meta" in p.parts]
            assert len(sidecars) == 2
            heads = [store.head(item.key) for item in store.list()]
            assert len(heads) == 2 and all(h is not None and h.sha256 for h in heads)
        finally:
            app.state.services.close()
