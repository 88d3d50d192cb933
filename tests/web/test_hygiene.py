"""Response hygiene: no echo in ``Warning``, ``nosniff``, ``no-store`` for the way back,
offline ``/docs``, URLs not taken from the ``Host`` header, ``Allow`` on 405."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
import pytest

from dicomveil.web import Settings, create_app
from dicomveil.web.warning_header import warning_header
from tests.web.conftest import auth
from tests.web.support import first, related_body

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "name",
    [
        'ReferencedStudySequence.Foo"\r\nSet-Cookie: x',
        "ReferencedStudySequence.Zébulon",
        "ReferencedStudySequence.\u2603",
    ],
)
async def test_warning_never_echoes_the_query(
    client: httpx.AsyncClient, tokens: dict[str, str], name: str
) -> None:
    answer = await client.get("/dicomweb/studies", params={name: "1"}, headers=auth(tokens["read"]))
    assert answer.status_code == 400
    assert "warning" not in answer.headers and "set-cookie" not in answer.headers


async def test_warning_names_attributes_canonically(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    answer = await client.get(
        "/dicomweb/studies",
        params={"00081110.00081155": "1.2.3"},  # a sequence path, spelled as tags
        headers=auth(tokens["read"]),
    )
    assert answer.status_code == 200
    assert 'ReferencedStudySequence.ReferencedSOPInstanceUID"' in answer.headers["warning"]


def test_warning_header_keeps_only_safe_characters() -> None:
    value = warning_header(['a "quoted"\r\nX-Evil: 1 \u00e9\u2603'])["Warning"]
    assert value.startswith('299 dicomveil "') and value.endswith('"')
    inner = value[len('299 dicomveil "') : -1]
    assert '"' not in inner and "\r" not in inner and "\n" not in inner
    value.encode("latin-1")


async def test_nosniff_everywhere_and_no_store_on_reidentification(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    for path in ("/healthz", "/no/such/route", "/dicomweb/studies"):
        answer = await client.get(path)
        assert answer.headers["x-content-type-options"] == "nosniff", path
    answer = await client.post(
        "/api/v1/reidentify",
        json={"purpose": "audit", "patient": "nobody"},
        headers=auth(tokens["reidentify"]),
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    refused = await client.post("/api/v1/reidentify", json={"patient": "x"})
    assert refused.status_code == 401 and refused.headers["cache-control"] == "no-store"
    assert "cache-control" not in (await client.get("/healthz")).headers


async def test_405_allows_every_method(client: httpx.AsyncClient) -> None:
    answer = await client.put("/dicomweb/studies")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, POST"
    answer = await client.get("/api/v1/reidentify")
    assert answer.status_code == 405 and answer.headers["allow"] == "POST"


async def test_docs_are_served_locally(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    assert "/docs/static/swagger-ui-bundle.js" in page.text
    script = await client.get("/docs/static/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    assert (await client.get("/openapi.json")).status_code == 200


async def test_docs_can_be_turned_off(settings: Settings) -> None:
    app = create_app(dataclasses.replace(settings, docs=False))
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            for path in ("/docs", "/openapi.json", "/docs/static/swagger-ui.css"):
                assert (await c.get(path)).status_code == 404, path
    finally:
        app.state.services.close()


async def test_urls_never_from_the_host_header(
    client: httpx.AsyncClient, tokens: dict[str, str], demo_files: list[Path]
) -> None:
    content_type, body = related_body([demo_files[0].read_bytes()])
    answer = await client.post(
        "/dicomweb/studies",
        content=body,
        headers={
            **auth(tokens["ingest"]),
            "Content-Type": content_type,
            "Host": "evil.example:666",
        },
    )
    assert answer.status_code == 200
    url = str(first(answer.json()["00081199"]["Value"][0]["00081190"]))
    assert url.startswith("http://testserver/dicomweb/studies/") and "evil" not in answer.text


async def test_json_body_limit_on_every_route(
    client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    """A JSON body above ``max_json_bytes`` is 413, on JSON routes and on the batches route
    (which also takes uploads), before the body is parsed."""
    body = b'{"folder": "' + b"a" * (32 * 1024) + b'"}'
    for path, role in (("/api/v1/reidentify", "reidentify"), ("/api/v1/batches", "ingest")):
        answer = await client.post(
            path, content=body, headers={**auth(tokens[role]), "Content-Type": "application/json"}
        )
        assert answer.status_code == 413, (path, answer.text)
