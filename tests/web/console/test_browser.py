"""The console in Chromium: log in through the form, use every page, check accessibility.

Each test opens its own browser context (its own cookies) on the module's live gateway,
which holds the demo study (planted PHI). axe-core (npm, ``.ci/node``) is injected into each
page; no serious or critical violation is allowed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from tests.support.servers import require
from tests.web.console.live import Live

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[3]
PAGES = {
    "/console/": "Dashboard",
    "/console/studies": "Studies",
    "/console/batches": "Batches",
    "/console/quarantine": "Quarantine",
    "/console/audit": "Audit log",
    "/console/tokens": "Tokens",
    "/console/routes": "Routes",
    "/console/policy": "Policy",
}
DATA_PAGES = {"/console/studies": "read", "/console/batches": "ingest"}
"""Pages the admin role cannot open (no data access), with the role that can."""


def axe_source() -> str:
    """axe-core's browser bundle (``scripts/setup`` installs it into ``.ci/node``)."""
    candidates = [
        os.environ.get("DICOMVEIL_AXE_JS", ""),
        str(ROOT / ".ci" / "node" / "node_modules" / "axe-core" / "axe.min.js"),
    ]
    found = next((Path(c) for c in candidates if c and Path(c).is_file()), None)
    require("axe-core (npm install --prefix .ci/node axe-core)", found)
    assert found is not None
    return found.read_text(encoding="utf-8")


class Tab:
    """A page in its own context, recording failed responses and console errors."""

    def __init__(self, browser: Any, live: Live) -> None:
        self.live = live
        self.context = browser.new_context(bypass_csp=True)  # axe is injected by script
        self.page = self.context.new_page()
        self.bad: list[tuple[int, str]] = []
        self.errors: list[str] = []
        self.page.on("response", lambda r: r.status >= 400 and self.bad.append((r.status, r.url)))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))

    def login(self, role: str) -> None:
        self.page.goto(self.live.url + "/console/login")
        self.page.fill("#token", self.live.tokens[role])
        self.page.click("button[type=submit]")
        self.page.wait_for_url(self.live.url + "/console/")

    def open(self, path: str) -> Any:
        return self.page.goto(self.live.url + path)

    def axe_violations(self, source: str) -> list[str]:
        self.page.evaluate(source)
        found = self.page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
            ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
            ".map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))"
        )
        return list(found)


@pytest.fixture
def tab(playwright_browser: Any, live: Live) -> Iterator[Tab]:
    opened = Tab(playwright_browser, live)
    try:
        yield opened
    finally:
        opened.context.close()


@pytest.mark.slow
def test_every_page_renders_for_its_role_and_passes_axe(tab: Tab) -> None:
    source = axe_source()
    tab.page.goto(tab.live.url + "/console/login")
    assert tab.axe_violations(source) == []
    for path, heading in PAGES.items():
        role = DATA_PAGES.get(path, "admin")  # admin has no data access
        tab.context.clear_cookies()
        tab.login(role)
        answer = tab.open(path)
        assert answer.status == 200, path
        assert tab.page.inner_text("h1").startswith(heading), path
        assert tab.axe_violations(source) == [], path
    assert tab.page.locator("svg.chart").count() == 0  # policy page: no chart
    tab.open("/console/")
    assert tab.page.locator("svg.chart").count() >= 2
    assert tab.bad == [] and tab.errors == []


def test_studies_show_thumbnails_through_the_session(tab: Tab) -> None:
    tab.login("read")
    tab.open("/console/studies")
    images = tab.page.locator("img.thumb")
    assert images.count() == 2
    tab.page.wait_for_function(
        "() => [...document.querySelectorAll('img.thumb')].every(i => i.complete)"
    )
    widths = tab.page.eval_on_selector_all("img.thumb", "els => els.map(e => e.naturalWidth)")
    assert all(width > 0 for width in widths)
    assert tab.axe_violations(axe_source()) == []
    tab.page.fill("#f-PatientID", "no-such-patient*")
    tab.page.click("form[role=search] button")
    assert tab.page.locator("img.thumb").count() == 0
    assert tab.bad == [] and tab.errors == []


def test_a_read_session_sees_no_token_admin_or_reidentification(tab: Tab) -> None:
    tab.login("read")
    nav = tab.page.inner_text("nav")
    assert "Tokens" not in nav and "Re-identify" not in nav and "Audit" not in nav
    for path in ("/console/tokens", "/console/reidentify", "/console/audit"):
        assert tab.open(path).status == 403
        assert "needs the" in tab.page.inner_text("main")


def test_revoking_a_token_in_the_browser_ends_its_api_calls(tab: Tab) -> None:
    tab.login("admin")
    tab.open("/console/tokens")
    tab.page.select_option("#role", "read")
    tab.page.fill("#name", "revoke-me")
    tab.page.click("form[action='/console/tokens'] button")
    secret = tab.page.input_value("#secret")
    assert secret.startswith("dvt_")
    import httpx

    headers = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=tab.live.url, headers=headers) as api:
        assert api.get("/dicomweb/studies").status_code == 200
        tab.open("/console/tokens")
        assert secret not in tab.page.content()
        row = tab.page.locator("tr", has_text="revoke-me")
        row.locator("button").click()
        tab.page.wait_for_url(tab.live.url + "/console/tokens")
        assert tab.page.locator("tr", has_text="revoke-me").count() == 0
        assert api.get("/dicomweb/studies").status_code == 401


def test_reidentification_refuses_without_a_purpose(tab: Tab, demo_originals: list[Path]) -> None:
    tab.login("reidentify")
    tab.open("/console/reidentify")
    assert tab.axe_violations(axe_source()) == []
    with tab.live.client("read") as api:
        study = api.get("/dicomweb/studies").json()[0]["0020000D"]["Value"][0]
    tab.page.select_option("#kind", "study")
    tab.page.fill("#value", study)
    tab.page.eval_on_selector("#purpose", "e => e.removeAttribute('required')")
    tab.page.fill("#purpose", " ")
    with tab.page.expect_response(lambda r: r.request.method == "POST") as posted:
        tab.page.click("form[action='/console/reidentify'] button")
    assert posted.value.status == 403
    assert "purpose" in tab.page.inner_text("[role=alert]")
    tab.page.select_option("#kind", "study")  # the answer's form starts empty
    tab.page.fill("#value", study)
    tab.page.fill("#purpose", "tumour board")
    with tab.page.expect_response(lambda r: r.request.method == "POST") as posted:
        tab.page.click("form[action='/console/reidentify'] button")
    assert posted.value.status == 200
    assert posted.value.headers["cache-control"] == "no-store"
    names = {str(pydicom.dcmread(p).PatientID) for p in demo_originals}
    assert any(name in tab.page.content() for name in names)


def test_logout_in_the_browser(tab: Tab) -> None:
    tab.login("read")
    tab.page.click("form.logout button")
    tab.page.wait_for_url(tab.live.url + "/console/login")
    assert tab.page.context.cookies() == []
    assert tab.open("/console/studies").url.endswith("/console/login")
