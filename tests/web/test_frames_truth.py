"""WADO-RS frames of a JPEG YBR_FULL_422 instance, retrieved by dicomweb-client from a
running ``dicomveil serve``: as stored (``image/jpeg``, byte for byte) and transcoded
(``application/octet-stream``: interleaved RGB, labelled Explicit VR Little Endian),
with the pixel values checked against pydicom's own decoding. The metadata keeps
describing the stored instance (PS3.18 §10.4.1.1.2)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames
from pydicom.pixels.utils import pixel_array

from tests.web.gateway_server import Gateway, running_gateway
from tests.web.support import TEST_KEY

pytestmark = pytest.mark.server

EXPLICIT_LE = "1.2.840.10008.1.2.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, pydicom.Dataset]]:
    """The gateway, and the de-identified instance it archived (retrieved as stored)."""
    from dicomweb_client.api import DICOMwebClient

    home = tmp_path_factory.mktemp("frames") / "home"
    with running_gateway(home, TEST_KEY) as gateway:
        writer = DICOMwebClient(
            url=f"{gateway.url}/dicomweb",
            headers={"Authorization": f"Bearer {gateway.tokens['ingest']}"},
        )
        source = pydicom.dcmread(str(get_testdata_file("examples_ybr_color.dcm")))
        assert source.PhotometricInterpretation == "YBR_FULL_422"
        answer = writer.store_instances(datasets=[source])
        url = str(answer.ReferencedSOPSequence[0].RetrieveURL)
        ds = pydicom.dcmread(io.BytesIO(_get(gateway, url, "application/dicom").content))
        yield gateway, ds


def _reader(gateway: Gateway) -> object:
    from dicomweb_client.api import DICOMwebClient

    return DICOMwebClient(
        url=f"{gateway.url}/dicomweb",
        headers={"Authorization": f"Bearer {gateway.tokens['read']}"},
    )


def _get(gateway: Gateway, url: str, accept: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {gateway.tokens['read']}", "Accept": accept}
    answer = httpx.get(url, headers=headers, timeout=30)
    answer.raise_for_status()
    return answer


def _uids(ds: pydicom.Dataset) -> tuple[str, str, str]:
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def _frames_url(gateway: Gateway, ds: pydicom.Dataset) -> str:
    study, series, sop = _uids(ds)
    return f"{gateway.url}/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/1"


class TestFramesAsStored:
    def test_dicomweb_client_gets_the_jpeg_fragment(
        self, stored: tuple[Gateway, pydicom.Dataset]
    ) -> None:
        gateway, ds = stored
        assert ds.file_meta.TransferSyntaxUID == JPEG_BASELINE
        got = _reader(gateway).retrieve_instance_frames(  # type: ignore[attr-defined]
            *_uids(ds), frame_numbers=[1, 30], media_types=(("image/jpeg", JPEG_BASELINE),)
        )
        fragments = list(generate_frames(ds.PixelData, number_of_frames=ds.NumberOfFrames))
        assert got == [fragments[0], fragments[29]]

    @pytest.mark.parametrize(
        "accept",
        [
            'multipart/related; type="image/jpeg"',
            f'multipart/related; type="image/jpeg"; transfer-syntax={JPEG_BASELINE}',
            'multipart/related; type="image/jpeg"; transfer-syntax=*',
            'multipart/related; type="*/*"; transfer-syntax=*',
        ],
    )
    def test_the_part_says_what_it_is(
        self, stored: tuple[Gateway, pydicom.Dataset], accept: str
    ) -> None:
        gateway, ds = stored
        answer = _get(gateway, _frames_url(gateway, ds), accept)
        assert f"transfer-syntax={JPEG_BASELINE}" in answer.headers["content-type"]
        assert f"Content-Type: image/jpeg; transfer-syntax={JPEG_BASELINE}".encode() in (
            answer.content
        )

    def test_another_jpeg_syntax_is_not_served_as_this_one(
        self, stored: tuple[Gateway, pydicom.Dataset]
    ) -> None:
        gateway, ds = stored
        lossless = 'multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.70'
        with pytest.raises(httpx.HTTPStatusError) as caught:
            _get(gateway, _frames_url(gateway, ds), lossless)
        assert caught.value.response.status_code == 406


class TestFramesTranscoded:
    def test_dicomweb_client_gets_rgb_pixels(self, stored: tuple[Gateway, pydicom.Dataset]) -> None:
        gateway, ds = stored
        frames = _reader(gateway).retrieve_instance_frames(  # type: ignore[attr-defined]
            *_uids(ds), frame_numbers=[2, 30], media_types=(("application/octet-stream", "*"),)
        )
        for frame, index in zip(frames, (1, 29), strict=True):
            assert len(frame) == ds.Rows * ds.Columns * 3
            got = np.frombuffer(frame, dtype=np.uint8).reshape(ds.Rows, ds.Columns, 3)
            rgb = pixel_array(ds, index=index)  # pydicom converts YBR_FULL_422 JPEG to RGB
            assert np.array_equal(got, rgb)
            ybr = pixel_array(ds, index=index, as_rgb=False)
            assert not np.array_equal(got, ybr)  # really RGB, not YCbCr

    def test_the_part_says_explicit_little_endian(
        self, stored: tuple[Gateway, pydicom.Dataset]
    ) -> None:
        gateway, ds = stored
        answer = _get(
            gateway, _frames_url(gateway, ds), 'multipart/related; type="application/octet-stream"'
        )
        assert f"transfer-syntax={EXPLICIT_LE}" in answer.headers["content-type"]
        part = f"Content-Type: application/octet-stream; transfer-syntax={EXPLICIT_LE}"
        assert part.encode() in answer.content

    @pytest.mark.parametrize(
        ("syntax", "status"), [("*", 200), (EXPLICIT_LE, 200), (JPEG_BASELINE, 406)]
    )
    def test_raw_frames_only_in_explicit_little_endian(
        self, stored: tuple[Gateway, pydicom.Dataset], syntax: str, status: int
    ) -> None:
        gateway, ds = stored
        accept = f'multipart/related; type="application/octet-stream"; transfer-syntax={syntax}'
        headers = {"Authorization": f"Bearer {gateway.tokens['read']}", "Accept": accept}
        answer = httpx.get(_frames_url(gateway, ds), headers=headers, timeout=30)
        assert answer.status_code == status

    def test_metadata_describes_the_stored_instance(
        self, stored: tuple[Gateway, pydicom.Dataset]
    ) -> None:
        gateway, ds = stored
        metadata = _reader(gateway).retrieve_instance_metadata(*_uids(ds))  # type: ignore[attr-defined]
        assert metadata["00280004"]["Value"] == ["YBR_FULL_422"]
        assert "00020010" not in metadata  # no file meta: the frames answer says its syntax
