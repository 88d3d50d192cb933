"""QIDO-RS over the archive: matching, paging, includefield, flat searches, negotiation."""

from __future__ import annotations

from pathlib import Path

import httpx
import pydicom
import pytest

from tests.web.conftest import auth
from tests.web.support import DICOM_JSON, first

pytestmark = pytest.mark.anyio

Archive = dict[str, list[str]]


async def search(
    client: httpx.AsyncClient, token: str, path: str, **params: object
) -> httpx.Response:
    return await client.get(f"/dicomweb{path}", params=params, headers=auth(token))  # type: ignore[arg-type]


def values(answer: httpx.Response, tag: str) -> list[object]:
    assert answer.status_code == 200, answer.text
    return [first(item[tag]) for item in answer.json() if "Value" in item[tag]]


class TestStudies:
    async def test_all_studies(
        self, client: httpx.AsyncClient, tokens: dict[str, str], archive: Archive
    ) -> None:
        answer = await search(client, tokens["read"], "/studies")
        assert answer.headers["content-type"].startswith(DICOM_JSON)
        studies = answer.json()
        assert sorted(values(answer, "0020000D")) == archive["studies"]
        study = studies[0]
        assert first(study["00201206"]) == 2 and first(study["00201208"]) == 6
        assert study["00080061"]["Value"] == ["CT"]
        assert str(first(study["00081190"])).startswith("http://testserver/dicomweb/studies/2.25.")
        assert "Alphabetic" in first(study["00100010"])  # type: ignore[operator]

    async def test_match_by_pseudonyms(
        self, client: httpx.AsyncClient, tokens: dict[str, str], archive: Archive
    ) -> None:
        everything = (await search(client, tokens["read"], "/studies")).json()
        patient = str(first(everything[1]["00100020"]))
        answer = await search(client, tokens["read"], "/studies", PatientID=patient)
        assert values(answer, "0020000D") == [first(everything[1]["0020000D"])]
        # by tag, wild card and UID list
        answer = await search(client, tokens["read"], "/studies", **{"00100020": patient[:4] + "*"})
        assert len(answer.json()) >= 1
        both = ",".join(archive["studies"])
        answer = await search(client, tokens["read"], "/studies", StudyInstanceUID=both)
        assert sorted(values(answer, "0020000D")) == archive["studies"]
        answer = await search(client, tokens["read"], "/studies", ModalitiesInStudy="MR")
        assert answer.json() == []

    async def test_original_identifiers_find_nothing(
        self,
        client: httpx.AsyncClient,
        tokens: dict[str, str],
        archive: Archive,
        demo_files: list[Path],
    ) -> None:
        original = pydicom.dcmread(demo_files[0], stop_before_pixels=True)
        for name, value in (
            ("PatientID", original.PatientID),
            ("PatientName", str(original.PatientName)),
            ("AccessionNumber", original.AccessionNumber),
            ("StudyInstanceUID", original.StudyInstanceUID),
        ):
            answer = await search(client, tokens["read"], "/studies", **{name: value})
            assert answer.json() == [], name
            assert value not in answer.text

    async def test_paging(
        self, client: httpx.AsyncClient, tokens: dict[str, str], archive: Archive
    ) -> None:
        first_page = await search(client, tokens["read"], "/studies", limit=1)
        second_page = await search(client, tokens["read"], "/studies", limit=1, offset=1)
        assert len(first_page.json()) == len(second_page.json()) == 1
        assert first_page.json() != second_page.json()
        assert (await search(client, tokens["read"], "/studies", offset=5)).json() == []
        answer = await search(client, tokens["read"], "/studies", limit=5000)
        assert "reduced to 1000" in answer.headers["warning"]

    async def test_includefield(
        self, client: httpx.AsyncClient, tokens: dict[str, str], archive: Archive
    ) -> None:
        answer = await search(
            client, tokens["read"], "/studies", includefield="PatientIdentityRemoved"
        )
        assert all(first(item["00120062"]) == "YES" for item in answer.json())
        answer = await search(client, tokens["read"], "/studies", includefield="all")
        item = answer.json()[0]
        assert "00120063" in item  # De-identification Method, a patient-level attribute
        assert "00200013" not in item  # InstanceNumber is not a study attribute
        answer = await search(client, tokens["read"], "/studies", includefield="NotAKeyword")
        assert answer.status_code == 400

    async def test_unsupported_attribute_warns(
        self, client: httpx.AsyncClient, tokens: dict[str, str], archive: Archive
    ) -> None:
        answer = await search(
            client, tokens["read"], "/studies", Modality="CT", InstitutionName="X"
        )
        assert answer.status_code == 200 and len(answer.json()) == 2
        warning = answer.headers["warning"]
        assert warning.startswith("299 ") and "InstitutionName, Modality" in warning

    @pytest.mark.parametrize(
        "params",
        [
            {"StudyDate": "yesterday"},
            {"StudyInstanceUID": "1.2.abc"},
            {"NoSuchKeyword": "1"},
            {"limit": "-1"},
            {"offset": "x"},
            {"SeriesNumber": "1*"},
        ],
    )
    async def test_bad_query_is_400(
        self,
        client: httpx.AsyncClient,
        tokens: dict[str, str],
        params: dict[str, str],
    ) -> None:
        answer = await search(client, tokens["read"], "/series", **params)
        assert answer.status_code == 400
        body = answer.json()
        assert set(body) == {"error"}
        for value in params.values():
            if len(value) > 2:
                assert value not in answer.text  # never echoed

    async def test_not_acceptable(
        self, client: httpx.AsyncClient, tokens: dict[str, str], archive: Archive
    ) -> None:
        answer = await client.get(
            "/dicomweb/studies",
            headers={
                **auth(tokens["read"]),
                "Accept": "multipart/related; type=application/dicom+xml",
            },
        )
        assert answer.status_code == 406
        answer = await client.get(
            "/dicomweb/studies", headers={**auth(tokens["read"]), "Accept": "application/json"}
        )
        assert answer.status_code == 200


class TestSeriesAndInstances:
    async def test_hierarchical(
        self, client: httpx.AsyncClient, tokens: dict[str, str], archive: Archive
    ) -> None:
        study = archive["studies"][0]
        series = await search(client, tokens["read"], f"/studies/{study}/series")
        assert len(series.json()) == 2
        assert all(first(s["0020000D"]) == study for s in series.json())
        assert {first(s["00201209"]) for s in series.json()} == {3}
        one = str(first(series.json()[0]["0020000E"]))
        instances = await search(client, tokens["read"], f"/studies/{study}/series/{one}/instances")
        assert len(instances.json()) == 3
        assert [first(i["00200013"]) for i in instances.json()] == [1, 2, 3]
        item = instances.json()[0]
        assert first(item["00280010"]) == 64 and first(item["00280011"]) == 64
        url = str(first(item["00081190"]))
        assert url.endswith(f"/series/{one}/instances/{first(item['00080018'])}")
        in_study = await search(client, tokens["read"], f"/studies/{study}/instances")
        assert len(in_study.json()) == 6
        assert (await search(client, tokens["read"], "/studies/2.25.1/series")).json() == []

    async def test_flat(
        self, client: httpx.AsyncClient, tokens: dict[str, str], archive: Archive
    ) -> None:
        series = await search(client, tokens["read"], "/series", Modality="CT")
        assert len(series.json()) == 4
        assert "00100020" in series.json()[0]  # study and patient attributes come along
        instances = await search(
            client, tokens["read"], "/instances", SeriesInstanceUID=archive["series"][0]
        )
        assert len(instances.json()) == 3
        answer = await search(
            client, tokens["read"], "/instances", InstanceNumber=2, includefield="00280030"
        )
        assert len(answer.json()) == 4
        assert answer.json()[0]["00280030"]["vr"] == "DS"  # PixelSpacing via includefield
