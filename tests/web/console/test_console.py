"""The console and its sessions over HTTP (in process): cookie, roles, CSRF, audit, PHI.

Browsers are in ``test_browser.py``; these tests pin the server's side of each rule.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pydicom
import pytest
from fastapi import FastAPI

from dicomveil.audit import AuditLog
from dicomveil.web.console.sessions import SessionStore
from tests.web.conftest import actor, auth
from tests.web.support import related_body

pytestmark = pytest.mark.anyio

COOKIE = "__Host-dicomveil-session"
PAGES = (
    "/console/",
    "/console/studies",
    "/console/batches",
    "/console/quarantine",
    "/console/audit",
    "/console/tokens",
    "/console/routes",
    "/console/policy",
    "/console/reidentify",
)
ALLOWED = {
    "read": {"/console/", "/console/studies", "/console/policy"},
    "ingest": {"/console/", "/console/batches", "/console/quarantine", "/console/policy"},
    "reidentify": {"/console/", "/console/policy", "/console/reidentify"},
    "admin": set(PAGES) - {"/console/reidentify", "/console/studies", "/console/batches"},
}


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client over https (so the Secure cookie is kept and sent), following no redirect."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        yield c


async def login(client: httpx.AsyncClient, token: str) -> str:
    """Log in through the form; return the session's CSRF token (from the dashboard)."""
    answer = await client.post("/console/login", data={"token": token})
    assert answer.status_code == 303, answer.text
    page = await client.get("/console/")
    assert page.status_code == 200
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


def audit_events(home: Path) -> list[tuple[str, str, str]]:
    log = AuditLog.open(home, create=False)
    return [(e.event, e.actor, e.outcome) for e in log.entries()]


async def test_login_sets_a_strict_host_only_cookie_and_is_audited(
    browser: httpx.AsyncClient, tokens: dict[str, str], home: Path
) -> None:
    refused = await browser.post("/console/login", data={"token": "dvt_not-a-token"})
    assert refused.status_code == 401 and COOKIE not in refused.headers.get("set-cookie", "")
    answer = await browser.post("/console/login", data={"token": tokens["read"]})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(COOKIE + "=")
    for attribute in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"):
        assert attribute.lower() in cookie.lower(), cookie
    assert tokens["read"] not in cookie
    events = audit_events(home)
    assert ("console.login", "<unknown>", "denied") in events
    assert ("console.login", actor(home, "read"), "success") in events
    written = b"".join(p.read_bytes() for p in (home / "audit").iterdir() if p.is_file())
    assert b"dvt_" not in written  # not even the refused attempt


async def test_no_session_goes_to_the_login_page(browser: httpx.AsyncClient) -> None:
    for path in PAGES:
        answer = await browser.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/console/login"


@pytest.mark.parametrize("role", ["read", "ingest", "reidentify", "admin"])
async def test_each_page_checks_the_role(
    browser: httpx.AsyncClient, tokens: dict[str, str], role: str
) -> None:
    await login(browser, tokens[role])
    for path in PAGES:
        answer = await browser.get(path)
        expected = 200 if path in ALLOWED[role] else 403
        assert answer.status_code == expected, (role, path)
        assert answer.headers["cache-control"] == "no-store"
        assert "script-src" not in answer.headers["content-security-policy"]  # none at all
        assert "default-src 'none'" in answer.headers["content-security-policy"]
    dashboard = (await browser.get("/console/")).text
    assert ('href="/console/tokens"' in dashboard) is (role == "admin")
    assert ('href="/console/reidentify"' in dashboard) is (role == "reidentify")


async def test_the_cookie_admits_read_only_dicomweb_gets_only(
    browser: httpx.AsyncClient, tokens: dict[str, str], demo_files: list[Path]
) -> None:
    assert (await browser.get("/dicomweb/studies")).status_code == 401
    await login(browser, tokens["admin"])  # admin: no data access
    assert (await browser.get("/dicomweb/studies")).status_code == 401
    browser.cookies.clear()
    await login(browser, tokens["read"])
    assert (await browser.get("/dicomweb/studies")).status_code == 200
    content_type, body = related_body([demo_files[0].read_bytes()])
    stow = await browser.post(
        "/dicomweb/studies", content=body, headers={"Content-Type": content_type}
    )
    assert stow.status_code == 401
    assert (await browser.get("/api/v1/batches")).status_code == 401
    assert (await browser.get("/metrics")).status_code == 401
    reid = await browser.post("/api/v1/reidentify", json={"purpose": "x", "patient": "p"})
    assert reid.status_code == 401


async def test_logout_ends_the_session(
    browser: httpx.AsyncClient, tokens: dict[str, str], home: Path
) -> None:
    csrf = await login(browser, tokens["read"])
    cookie = browser.cookies[COOKIE]
    refused = await browser.post("/console/logout", data={"csrf": "wrong"})
    assert refused.status_code == 403
    answer = await browser.post("/console/logout", data={"csrf": csrf})
    assert answer.status_code == 303
    browser.cookies.clear()
    replay = await browser.get("/dicomweb/studies", headers={"Cookie": f"{COOKIE}={cookie}"})
    assert replay.status_code == 401
    assert ("console.logout", actor(home, "read"), "success") in audit_events(home)


def test_sessions_expire(tmp_path: Path) -> None:
    now = [1000.0]
    store = SessionStore(tmp_path / "s.sqlite", lifetime=60, clock=lambda: now[0])
    session, secret = store.open("tok1")
    assert store.find(secret) == session
    now[0] += 59
    assert store.find(secret) is not None
    now[0] += 2
    assert store.find(secret) is None
    assert store.find("") is None and store.find("x" * 500) is None
    assert (tmp_path / "s.sqlite").stat().st_mode & 0o777 == 0o600


async def test_revoking_a_token_ends_its_api_calls_and_sessions(
    browser: httpx.AsyncClient, client: httpx.AsyncClient, tokens: dict[str, str], home: Path
) -> None:
    assert (await client.get("/dicomweb/studies", headers=auth(tokens["read"]))).status_code == 200
    reader = httpx.AsyncClient(transport=browser._transport, base_url="https://testserver")
    async with reader:
        await login(reader, tokens["read"])
        csrf = await login(browser, tokens["admin"])
        page = (await browser.get("/console/tokens")).text
        ids = dict(re.findall(r"<code>([0-9a-f]{12})</code></td><td>([^<]*)</td>", page))
        read_id = next(i for i, name in ids.items() if name == "test-read")
        forged = await browser.post(f"/console/tokens/{read_id}/revoke", data={"csrf": "x"})
        assert forged.status_code == 403
        answer = await browser.post(f"/console/tokens/{read_id}/revoke", data={"csrf": csrf})
        assert answer.status_code == 303
        after = await client.get("/dicomweb/studies", headers=auth(tokens["read"]))
        assert after.status_code == 401
        assert (await reader.get("/console/studies")).status_code == 303
        assert (await reader.get("/dicomweb/studies")).status_code == 401
    assert ("token.revoke", actor(home, "admin"), "success") in audit_events(home)


async def test_token_created_on_the_console_works_and_is_shown_once(
    browser: httpx.AsyncClient, client: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    csrf = await login(browser, tokens["admin"])
    answer = await browser.post(
        "/console/tokens", data={"csrf": csrf, "role": "read", "name": "viewer-1"}
    )
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    secret = re.search(r'value="(dvt_[^"]+)"', answer.text)
    assert secret
    api = await client.get("/dicomweb/studies", headers=auth(secret.group(1)))
    assert api.status_code == 200
    assert secret.group(1) not in (await browser.get("/console/tokens")).text
    bad = await browser.post("/console/tokens", data={"csrf": csrf, "role": "root"})
    assert bad.status_code == 400


async def test_reidentification_needs_a_purpose_and_is_audited(
    browser: httpx.AsyncClient,
    tokens: dict[str, str],
    archive: dict[str, list[str]],
    demo_files: list[Path],
    home: Path,
) -> None:
    csrf = await login(browser, tokens["reidentify"])
    study = archive["studies"][0]
    refused = await browser.post(
        "/console/reidentify",
        data={"csrf": csrf, "kind": "study", "value": study, "purpose": "  "},
    )
    assert refused.status_code == 403
    assert ("access.denied", actor(home, "reidentify"), "denied") in audit_events(home)
    answer = await browser.post(
        "/console/reidentify",
        data={"csrf": csrf, "kind": "study", "value": study, "purpose": "tumour board"},
    )
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    originals = {str(pydicom.dcmread(p).PatientID) for p in demo_files}
    assert any(original in answer.text for original in originals)
    assert ("reid.lookup", actor(home, "reidentify"), "success") in audit_events(home)
    forged = await browser.post(
        "/console/reidentify",
        data={"csrf": "x", "kind": "study", "value": study, "purpose": "p"},
    )
    assert forged.status_code == 403


async def test_quarantine_delete_is_audited(
    browser: httpx.AsyncClient, tokens: dict[str, str], home: Path
) -> None:
    folder = home / "quarantine" / "RUN1"
    folder.mkdir(parents=True)
    (folder / "000000-DOE_JOHN.dcm").write_bytes(b"x")
    reasons = '[{"file": "000000-DOE_JOHN.dcm", "source": "/in/DOE_JOHN.dcm", "reason": "bad"}]'
    (folder / "reasons.json").write_text(reasons)
    csrf = await login(browser, tokens["admin"])
    page = (await browser.get("/console/quarantine")).text
    assert "RUN1" in page and "bad (1)" in page and "DOE_JOHN" not in page
    escape = await browser.post("/console/quarantine/..%2Fbatches/delete", data={"csrf": csrf})
    assert escape.status_code == 404
    answer = await browser.post("/console/quarantine/RUN1/delete", data={"csrf": csrf})
    assert answer.status_code == 303 and not folder.exists()
    assert ("quarantine.delete", actor(home, "admin"), "success") in audit_events(home)


async def test_no_original_value_on_any_page_a_non_reidentify_role_opens(
    browser: httpx.AsyncClient,
    tokens: dict[str, str],
    archive: dict[str, list[str]],
    demo_files: list[Path],
) -> None:
    planted: set[str] = set()
    for path in demo_files:
        ds = pydicom.dcmread(path)
        for keyword in ("PatientName", "PatientID", "AccessionNumber", "StudyID", "PatientAddress"):
            value = str(ds.get(keyword, "") or "")
            if len(value) >= 4:
                planted |= {value, value.replace("^", " ")}
        planted |= {ds.StudyInstanceUID, ds.SOPInstanceUID}
    assert planted
    for role in ("read", "ingest", "admin"):
        browser.cookies.clear()
        await login(browser, tokens[role])
        for path in sorted(ALLOWED[role]) + ["/console/studies?PatientID=*"]:
            if path.split("?")[0] not in ALLOWED[role]:
                continue
            html = (await browser.get(path)).text
            leaked = [value for value in planted if value in html]
            assert not leaked, (role, path)


async def test_options_answers_with_allow_and_cors_is_off_by_default(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.options("/dicomweb/studies")
    assert answer.status_code == 204
    assert answer.headers["allow"] == "GET, HEAD, OPTIONS, POST"
    frames = await client.options("/dicomweb/studies/1/series/2/instances/3/frames/1")
    assert frames.headers["allow"] == "GET, HEAD, OPTIONS"
    preflight = await client.options(
        "/dicomweb/studies",
        headers={"Origin": "https://viewer.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    assert (await client.options("/no/such/path")).status_code == 404


async def test_cors_for_configured_origins_only(home: Path, key_file: Path) -> None:
    from dicomveil.tokens import token_store
    from dicomveil.web import Settings, create_app

    origin = "https://viewer.example:8443"
    settings = Settings(home=home, key_file=key_file, deid_processes=1, cors_origins=(origin,))
    app = create_app(settings)
    token = token_store(home).create("read", "cors")[1]
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            preflight = await c.options(
                "/dicomweb/studies",
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "GET",
                    "Access-Control-Request-Headers": "authorization",
                },
            )
            assert preflight.status_code == 204
            assert preflight.headers["access-control-allow-origin"] == origin
            assert "GET" in preflight.headers["access-control-allow-methods"]
            assert "Authorization" in preflight.headers["access-control-allow-headers"]
            assert "access-control-allow-credentials" not in preflight.headers
            other = await c.options(
                "/dicomweb/studies",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
            )
            assert "access-control-allow-origin" not in other.headers
            get = await c.get("/dicomweb/studies", headers={**auth(token), "Origin": origin})
            assert get.status_code == 200
            assert get.headers["access-control-allow-origin"] == origin
            assert "Origin" in get.headers["vary"]
            assert "Warning" in get.headers["access-control-expose-headers"]
            evil = await c.get(
                "/dicomweb/studies", headers={**auth(token), "Origin": "https://evil.example"}
            )
            assert "access-control-allow-origin" not in evil.headers
    finally:
        app.state.services.close()


@pytest.mark.parametrize(
    "origin", ["*", "https://viewer.example/", "ftp://viewer.example", "https://x.example/path"]
)
def test_cors_origins_must_be_plain_origins(home: Path, origin: str) -> None:
    from dicomveil.errors import ConfigError
    from dicomveil.web import Settings

    with pytest.raises(ConfigError, match="CORS origin"):
        Settings.from_mapping({"home": str(home), "cors_origins": [origin]})
    parsed = Settings.from_mapping(
        {"home": str(home), "cors_origins": "https://a.example, http://127.0.0.1:3000"}
    )
    assert parsed.cors_origins == ("https://a.example", "http://127.0.0.1:3000")


async def test_batches_page_shows_progress_failures_and_manifest(
    home: Path, key_file: Path, tokens: dict[str, str], demo_files: list[Path], tmp_path: Path
) -> None:
    import html
    import json

    from dicomveil.web import Settings, create_app
    from tests.web.test_batches import finished

    settings = Settings(
        home=home, key_file=key_file, deid_processes=1, batch_url=f"file://{tmp_path / 'out'}"
    )
    app = create_app(settings)
    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            files = [
                ("files", (f"{i}.dcm", p.read_bytes(), "application/dicom"))
                for i, p in enumerate(demo_files[:3])
            ]
            files.append(("files", ("broken.dcm", b"not dicom at all", "application/dicom")))
            answer = await c.post("/api/v1/batches", files=files, headers=auth(tokens["ingest"]))
            assert answer.status_code == 202, answer.text
            batch_id = answer.json()["batch_id"]
            status = await finished(c, tokens["ingest"], batch_id)
            assert status["state"] == "complete", status
            await login(c, tokens["ingest"])
            listing = await c.get("/console/batches")
            assert listing.status_code == 200 and batch_id in listing.text
            assert f'value="{status["inputs"]["total"]}"' in listing.text  # progress: all done
            page = await c.get(f"/console/batches/{batch_id}")
            assert page.status_code == 200
            assert "Failures" in page.text and "broken" not in page.text
            assert "total_images" in page.text  # the manifest, shown
            assert (await c.get("/console/batches/NOSUCHBATCH")).status_code == 404
            dashboard = await c.get("/console/")
            assert batch_id in dashboard.text and "svg" in dashboard.text
            leaked = [p.parent.parent.name.split("_")[0] for p in demo_files[:3]]
            for text in (listing.text, page.text, dashboard.text):
                assert not any(name in text for name in leaked)
                assert str(tmp_path) not in text and str(home) not in text
            manifest = page.text.split('<pre class="manifest">', 1)[1].split("</pre>")[0]
            assert json.loads(html.unescape(manifest))["batch_id"] == batch_id
    finally:
        app.state.services.close()


async def test_audit_page_searches_and_verifies_the_chain_on_request(
    browser: httpx.AsyncClient, tokens: dict[str, str], home: Path
) -> None:
    await login(browser, tokens["read"])
    browser.cookies.clear()
    await login(browser, tokens["admin"])
    page = await browser.get("/console/audit", params={"actor": actor(home, "read")})
    assert page.status_code == 200
    assert page.text.count("<td>console.login</td>") == 1
    assert f"<td>{actor(home, 'admin')}</td>" not in page.text
    assert "Verify the whole chain now" in page.text
    verified = await browser.get("/console/audit", params={"verify": "true"})
    assert "Chain: audit log OK: 2 entries verified" in verified.text
    log = home / "audit"
    target = log / "audit.jsonl"
    reader = actor(home, "read").encode()
    target.write_bytes(target.read_bytes().replace(reader, reader.upper()))
    broken = await browser.get("/console/audit", params={"verify": "true"})
    assert "does NOT verify" in broken.text


@pytest.mark.parametrize("block", [1, 3, 7, 64, 1 << 16])
@pytest.mark.parametrize("ending", [b"\n", b"\n{torn", b""])
def test_audit_lines_are_read_backwards(tmp_path: Path, block: int, ending: bytes) -> None:
    from dicomveil.audit._files import lines_backwards as _lines_backwards

    lines = [b"first", b"second line", b"x", b"a much longer fourth line " * 3]
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"\n".join(lines) + ending)
    expected = list(reversed(lines if ending != b"" else lines[:-1]))  # no newline: torn
    assert list(_lines_backwards(path, block)) == expected
    assert list(_lines_backwards(tmp_path / "missing", block)) == []
    path.write_bytes(b"torn only")
    assert list(_lines_backwards(path, block)) == []


async def test_the_accept_query_parameter_wins_over_the_header(
    client: httpx.AsyncClient, tokens: dict[str, str], archive: dict[str, list[str]]
) -> None:
    """OHIF asks for thumbnails with ``?accept=image/jpeg`` and a multipart Accept header."""
    url = archive["urls"][0] + "/thumbnail"
    header = {
        **auth(tokens["read"]),
        "Accept": 'multipart/related; type="application/octet-stream"',
    }
    assert (await client.get(url, headers=header)).status_code == 406
    jpeg = await client.get(url, params={"accept": "image/jpeg"}, headers=header)
    assert jpeg.status_code == 200 and jpeg.headers["content-type"] == "image/jpeg"
    png = await client.get(url, params={"accept": "image/png"}, headers=header)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    search = await client.get(
        "/dicomweb/studies",
        params={"accept": "application/dicom+json"},
        headers=auth(tokens["read"]),
    )
    assert search.status_code == 200 and len(search.json()) == 2
