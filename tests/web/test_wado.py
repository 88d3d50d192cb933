"""WADO-RS: instances, metadata with bulk data URIs, frames (native and encapsulated), rendered."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from dicomveil.pipeline.verify import verify_folders
from dicomveil.web.services import Services
from tests.web.conftest import auth
from tests.web.support import DICOM_JSON, datasets, first, related_body, split_related

pytestmark = pytest.mark.anyio

Archive = dict[str, list[str]]


def sample_file(name: str) -> Path:
    found = get_testdata_file(name)
    assert found is not None, name
    return Path(str(found))


async def store_one(client: httpx.AsyncClient, tokens: dict[str, str], path: Path) -> str:
    """STOW one file; return its WADO-RS instance URL path."""
    content_type, body = related_body([path.read_bytes()])
    answer = await client.post(
        "/dicomweb/studies",
        content=body,
        headers={**auth(tokens["ingest"]), "Content-Type": content_type},
    )
    assert answer.status_code == 200, answer.text
    url = str(first(answer.json()["00081199"]["Value"][0]["00081190"]))
    return url.removeprefix("http://testserver")


class TestRetrieve:
    async def test_study_round_trip_verifies(
        self,
        client: httpx.AsyncClient,
        tokens: dict[str, str],
        archive: Archive,
        demo_files: list[Path],
        tmp_path: Path,
    ) -> None:
        out = tmp_path / "retrieved"
        out.mkdir()
        count = 0
        for study in archive["studies"]:
            answer = await client.get(f"/dicomweb/studies/{study}", headers=auth(tokens["read"]))
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith(
                'multipart/related; type="application/dicom"'
            )
            for ds in datasets(answer.headers["content-type"], answer.content):
                assert ds.StudyInstanceUID == study and ds.PatientIdentityRemoved == "YES"
                ds.save_as(out / f"{count}.dcm", enforce_file_format=True)
                count += 1
        assert count == len(demo_files)
        result = verify_folders(demo_files[0].parents[2], out)
        assert result.originals == result.outputs == 12 and result.leaks == []

    async def test_series_and_instance(
        self, client: httpx.AsyncClient, tokens: dict[str, str], archive: Archive
    ) -> None:
        url = archive["urls"][0].removeprefix("http://testserver")
        series_url = url.rsplit("/instances/", 1)[0]
        answer = await client.get(series_url, headers=auth(tokens["read"]))
        assert len(datasets(answer.headers["content-type"], answer.content)) == 3
        answer = await client.get(url, headers=auth(tokens["read"]))
        (ds,) = datasets(answer.headers["content-type"], answer.content)
        assert url.endswith(ds.SOPInstanceUID)
        single = await client.get(
            url, headers={**auth(tokens["read"]), "Accept": "application/dicom"}
        )
        assert single.headers["content-type"] == "application/dicom"
        assert pydicom.dcmread(io.BytesIO(single.content)).SOPInstanceUID == ds.SOPInstanceUID
        refused = await client.get(url, headers={**auth(tokens["read"]), "Accept": "image/png"})
        assert refused.status_code == 406

    @pytest.mark.parametrize(
        "path",
        [
            "/dicomweb/studies/2.25.1",
            "/dicomweb/studies/2.25.1/metadata",
            "/dicomweb/studies/2.25.1/series/2.25.2/instances/2.25.3",
            "/dicomweb/studies/2.25.1/series/2.25.2/instances/2.25.3/frames/1",
            "/dicomweb/studies/2.25.1/series/2.25.2/instances/2.25.3/rendered",
            "/dicomweb/studies/2.25.1/thumbnail",
        ],
    )
    async def test_unknown_is_404(
        self, client: httpx.AsyncClient, tokens: dict[str, str], path: str
    ) -> None:
        answer = await client.get(path, headers=auth(tokens["read"]))
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "NotFound"


class TestMetadata:
    async def test_metadata_and_bulk_data(
        self, client: httpx.AsyncClient, tokens: dict[str, str], archive: Archive
    ) -> None:
        study = archive["studies"][0]
        answer = await client.get(
            f"/dicomweb/studies/{study}/metadata", headers=auth(tokens["read"])
        )
        assert answer.headers["content-type"].startswith(DICOM_JSON)
        headers = answer.json()
        assert len(headers) == 6
        pixel = headers[0]["7FE00010"]
        assert pixel["vr"] == "OW" and "InlineBinary" not in pixel
        uri = pixel["BulkDataURI"]
        assert uri.startswith(f"http://testserver/dicomweb/studies/{study}/series/")
        bulk = await client.get(uri, headers=auth(tokens["read"]))
        (part,) = split_related(bulk.headers["content-type"], bulk.content)
        assert part[0] == "application/octet-stream" and len(part[1]) == 64 * 64 * 2
        assert (
            await client.get(uri[:-8] + "00100010", headers=auth(tokens["read"]))
        ).status_code == 404
        assert (await client.get(uri[:-8] + "xyz", headers=auth(tokens["read"]))).status_code == 400
        instance = uri.rsplit("/bulkdata/", 1)[0].removeprefix("http://testserver")
        (one,) = (await client.get(instance + "/metadata", headers=auth(tokens["read"]))).json()
        assert first(one["00120062"]) == "YES"

    async def test_headers_built_on_first_read_and_kept(
        self,
        client: httpx.AsyncClient,
        tokens: dict[str, str],
        archive: Archive,
        services: Services,
    ) -> None:
        study = archive["studies"][0]
        assert {i.metadata for i in services.index.instances(study)} == {""}  # ingest left it
        url = f"/dicomweb/studies/{study}/metadata"
        built = (await client.get(url, headers=auth(tokens["read"]))).json()
        kept = [json.loads(i.metadata) for i in services.index.instances(study)]
        assert len(kept) == 6 and all(k["0020000D"]["Value"] == [study] for k in kept)
        again = (await client.get(url, headers=auth(tokens["read"]))).json()
        assert again == built
        # includefield takes the same headers
        search = await client.get(
            "/dicomweb/studies",
            params={"StudyInstanceUID": study, "includefield": "00120062"},
            headers=auth(tokens["read"]),
        )
        assert first(search.json()[0]["00120062"]) == "YES"

    async def test_includefield_builds_missing_headers(
        self,
        client: httpx.AsyncClient,
        tokens: dict[str, str],
        archive: Archive,
        services: Services,
    ) -> None:
        answer = await client.get(
            "/dicomweb/instances",
            params={"includefield": "all"},
            headers=auth(tokens["read"]),
        )
        assert answer.status_code == 200 and len(answer.json()) == 12
        assert all(first(row["00120062"]) == "YES" for row in answer.json())
        study = archive["studies"][1]
        assert "" not in {i.metadata for i in services.index.instances(study)}


class TestFrames:
    @pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # a UID in the sample file
    async def test_native_frames(self, client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
        source = sample_file("rtdose.dcm")
        url = await store_one(client, tokens, source)
        answer = await client.get(url + "/frames/2,15", headers=auth(tokens["read"]))
        assert answer.status_code == 200
        frames = split_related(answer.headers["content-type"], answer.content)
        original = pydicom.dcmread(source)
        length = original.Rows * original.Columns * original.BitsAllocated // 8
        assert [f[1] for f in frames] == [
            original.PixelData[length : 2 * length],
            original.PixelData[14 * length : 15 * length],
        ]
        assert (
            await client.get(url + "/frames/16", headers=auth(tokens["read"]))
        ).status_code == 404
        assert (
            await client.get(url + "/frames/0", headers=auth(tokens["read"]))
        ).status_code == 400
        assert (
            await client.get(url + "/frames/a", headers=auth(tokens["read"]))
        ).status_code == 400

    @pytest.mark.parametrize(
        ("name", "media_type"),
        [
            ("SC_rgb_jpeg_dcmtk.dcm", "image/jpeg"),
            ("JPEG2000.dcm", "image/jp2"),
            ("MR_small_jpeg_ls_lossless.dcm", "image/jls"),
        ],
    )
    async def test_encapsulated_frames(
        self, client: httpx.AsyncClient, tokens: dict[str, str], name: str, media_type: str
    ) -> None:
        source = sample_file(name)
        url = await store_one(client, tokens, source)
        original = pydicom.dcmread(source)
        # as stored, in the frame's own media type
        accept = f'multipart/related; type="{media_type}"'
        answer = await client.get(
            url + "/frames/1", headers={**auth(tokens["read"]), "Accept": accept}
        )
        assert answer.status_code == 200
        ((kind, data),) = split_related(answer.headers["content-type"], answer.content)
        assert kind.startswith(media_type) and "transfer-syntax=" in kind
        from pydicom.encaps import generate_frames

        assert data == next(generate_frames(original.PixelData, number_of_frames=1))
        # decoded, when only raw bytes are accepted
        accept = 'multipart/related; type="application/octet-stream"'
        answer = await client.get(
            url + "/frames/1", headers={**auth(tokens["read"]), "Accept": accept}
        )
        ((kind, data),) = split_related(answer.headers["content-type"], answer.content)
        assert kind.startswith("application/octet-stream") and '1.2.840.10008.1.2.1"' in kind
        assert data == original.pixel_array.tobytes()


class TestRendered:
    async def test_rendered_png_and_jpeg(
        self, client: httpx.AsyncClient, tokens: dict[str, str]
    ) -> None:
        url = await store_one(client, tokens, sample_file("CT_small.dcm"))
        png = await client.get(
            url + "/rendered",
            params={"window": "40,400"},
            headers={**auth(tokens["read"]), "Accept": "image/png"},
        )
        assert png.headers["content-type"] == "image/png"
        image = np.asarray(Image.open(io.BytesIO(png.content)))
        assert image.shape == (128, 128) and image.dtype == np.uint8
        narrow = await client.get(
            url + "/rendered",
            params={"window": "40,2"},
            headers={**auth(tokens["read"]), "Accept": "image/png"},
        )
        binary = np.asarray(Image.open(io.BytesIO(narrow.content)))
        assert set(np.unique(binary)) <= {0, 255}  # a 2-wide window thresholds
        assert not np.array_equal(image, binary)
        jpeg = await client.get(
            url + "/frames/1/rendered", params={"viewport": "64,64", "quality": "50"},
            headers=auth(tokens["read"]),
        )  # fmt: skip
        assert jpeg.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(jpeg.content)).size == (64, 64)

    @pytest.mark.parametrize("frame", ["²", "٣", "0", "-1", "1.0", "9" * 5000])
    async def test_a_rendered_frame_number_is_ascii_digits_from_1(
        self, client: httpx.AsyncClient, tokens: dict[str, str], frame: str
    ) -> None:
        """Unicode digits (``"²".isdigit()`` is true, ``int("²")`` fails) and numbers too
        long for ``int`` are a 400, never a server error (found by the OpenAPI fuzz)."""
        url = f"/dicomweb/studies/2.25.1/series/2.25.2/instances/2.25.3/frames/{frame}/rendered"
        answer = await client.get(url, headers=auth(tokens["read"]))
        assert answer.status_code == 400

    async def test_rendered_compressed_colour(
        self, client: httpx.AsyncClient, tokens: dict[str, str]
    ) -> None:
        url = await store_one(client, tokens, sample_file("SC_rgb_rle.dcm"))
        answer = await client.get(url + "/rendered", headers=auth(tokens["read"]))
        assert answer.status_code == 200
        assert Image.open(io.BytesIO(answer.content)).mode == "RGB"

    async def test_thumbnails(
        self, client: httpx.AsyncClient, tokens: dict[str, str], archive: Archive
    ) -> None:
        study = archive["studies"][0]
        for path in (
            f"/dicomweb/studies/{study}/thumbnail",
            archive["urls"][0].removeprefix("http://testserver").rsplit("/instances/", 1)[0]
            + "/thumbnail",
            archive["urls"][0].removeprefix("http://testserver") + "/thumbnail",
        ):
            answer = await client.get(path, headers=auth(tokens["read"]))
            assert answer.status_code == 200, path
            assert max(Image.open(io.BytesIO(answer.content)).size) <= 128

    @pytest.mark.parametrize(
        "params",
        [
            {"window": "40"},
            {"window": "a,b"},
            {"window": "1,400,sigmoid"},
            {"viewport": "0,10"},
            {"quality": "0"},
        ],
    )
    async def test_bad_parameters(
        self,
        client: httpx.AsyncClient,
        tokens: dict[str, str],
        archive: Archive,
        params: dict[str, str],
    ) -> None:
        url = archive["urls"][0].removeprefix("http://testserver")
        answer = await client.get(url + "/rendered", params=params, headers=auth(tokens["read"]))
        assert answer.status_code == 400
