"""The real OHIF Viewer (``@ohif/app`` from npm) in Chromium, served at ``/viewer/``.

The package (50 MB) is downloaded once into ``.ci/cache`` (or named by
``DICOMVEIL_OHIF_TGZ``) and installed with ``install_viewer`` as ``viewer install`` does,
integrity checked. A read session logs in through the console; the viewer then reads the
archive with the session cookie alone (no token in the page or its config).

Images: pydicom's CT (``CT_small.dcm``, uncompressed) and a 30-frame ultrasound stored as
JPEG Baseline (``examples_ybr_color.dcm``, served as stored), each with planted PHI.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file

from dicomveil.viewer import (
    DEFAULT_REGISTRY,
    PINNED_VERSION,
    install_viewer,
    published,
)
from tests.support.servers import require
from tests.web.console.conftest import gateway_settings
from tests.web.console.live import Live, live_gateway, store_files
from tests.web.support import TEST_KEY

pytestmark = [pytest.mark.slow, pytest.mark.server]

ROOT = Path(__file__).resolve().parents[3]
PHI = {"PatientName": "PLANTED^VIEWERPHI", "PatientID": "PHI-VIEWER-4711"}
CANVAS = "canvas.cornerstone-canvas"
PIXELS = """() => {
  const c = document.querySelector('canvas.cornerstone-canvas');
  const off = document.createElement('canvas');
  off.width = c.width; off.height = c.height;
  const g = off.getContext('2d'); g.drawImage(c, 0, 0);
  const px = g.getImageData(0, 0, c.width, c.height).data;
  const levels = new Set(); let lit = 0, sum = 0;
  for (let i = 0; i < px.length; i += 4) {
    const v = px[i] + px[i + 1] + px[i + 2];
    if (v) lit++; sum += v; levels.add(v);
  }
  return {lit: lit, levels: levels.size, sum: sum};
}"""


def ohif_package() -> Path:
    """The pinned ``@ohif/app`` package, from the cache or downloaded into it once."""
    named = os.environ.get("DICOMVEIL_OHIF_TGZ")
    if named:
        return Path(named)
    cache = ROOT / ".ci" / "cache" / f"ohif-app-{PINNED_VERSION}.tgz"
    if not cache.is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        url, _integrity = published(PINNED_VERSION, DEFAULT_REGISTRY)
        from dicomveil.viewer import _download, _fetch

        partial = cache.with_suffix(".part")
        _download(url, partial, _fetch)
        partial.replace(cache)  # checked against the pinned hash when installed
    return cache


@pytest.fixture(scope="module")
def viewer_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("viewer-originals")
    files = []
    for name in ("CT_small.dcm", "examples_ybr_color.dcm"):
        ds = pydicom.dcmread(get_testdata_file(name))
        for keyword, value in PHI.items():
            setattr(ds, keyword, value)
        ds.PatientBirthDate = "19700101"
        target = folder / name
        ds.save_as(target)
        files.append(target)
    return files


@pytest.fixture(scope="module")
def viewer_live(
    tmp_path_factory: pytest.TempPathFactory,
    viewer_images: list[Path],
    monkeypatch_module: pytest.MonkeyPatch,
) -> Iterator[tuple[Live, list[str]]]:
    root = tmp_path_factory.mktemp("viewer-live")
    key_file = root / "pseudonym.key"
    key_file.write_text(TEST_KEY + "\n")
    home = root / "home"
    monkeypatch_module.setenv("DICOMVEIL_HOME", str(home))
    install_viewer(home, tarball=ohif_package())
    with live_gateway(gateway_settings(home, key_file)) as running:
        studies = [store_files(running, [path])[0] for path in viewer_images]
        yield running, studies


class Viewer:
    """A logged-in page recording every failed response and console error."""

    def __init__(self, browser: Any, live: Live) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.page = self.context.new_page()
        self.live = live
        self.bad: list[tuple[int, str]] = []
        self.errors: list[str] = []
        self.thumbnails: list[int] = []
        self.page.on("response", self._response)
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(live.url + "/console/login")
        self.page.fill("#token", live.tokens["read"])
        self.page.click("button[type=submit]")
        self.page.wait_for_url(live.url + "/console/")

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.bad.append((response.status, response.url))
        if "/thumbnail" in response.url:
            self.thumbnails.append(response.status)

    def open_study(self, study: str) -> float:
        """Open a study; return the seconds until its first image is drawn."""
        started = time.monotonic()
        self.page.goto(f"{self.live.url}/viewer/viewer?StudyInstanceUIDs={study}")
        self.page.wait_for_selector(CANVAS, timeout=60_000)
        self.page.wait_for_function(
            f"() => {{ const s = ({PIXELS})(); return s.levels > 8; }}", timeout=60_000
        )
        return time.monotonic() - started

    def pixels(self) -> dict[str, int]:
        stats: dict[str, int] = self.page.evaluate(PIXELS)
        return stats


@pytest.fixture
def viewer(playwright_browser: Any, viewer_live: tuple[Live, list[str]]) -> Iterator[Viewer]:
    opened = Viewer(playwright_browser, viewer_live[0])
    try:
        yield opened
    finally:
        opened.context.close()


def test_ct_study_is_drawn_with_thumbnails_and_no_error(
    viewer: Viewer, viewer_live: tuple[Live, list[str]]
) -> None:
    seconds = viewer.open_study(viewer_live[1][0])
    stats = viewer.pixels()
    assert stats["lit"] > 10_000 and stats["levels"] > 50, stats
    viewer.page.wait_for_timeout(1000)  # thumbnails come after the first image
    assert viewer.thumbnails and all(status == 200 for status in viewer.thumbnails)
    assert viewer.bad == [] and viewer.errors == []
    html = viewer.page.content()
    assert not any(value in html for value in PHI.values())
    print(f"time to first image (CT): {seconds:.2f} s")


def test_multiframe_ultrasound_scrolls(viewer: Viewer, viewer_live: tuple[Live, list[str]]) -> None:
    viewer.open_study(viewer_live[1][1])
    first = viewer.pixels()
    viewer.page.mouse.move(760, 400)
    for _ in range(5):
        viewer.page.mouse.wheel(0, 120)
        viewer.page.wait_for_timeout(150)
    viewer.page.wait_for_function(f"() => ({PIXELS})().sum !== {first['sum']}", timeout=20_000)
    assert viewer.pixels()["levels"] > 8
    assert viewer.bad == [] and viewer.errors == []


def test_the_study_list_loads_through_the_session(
    viewer: Viewer, viewer_live: tuple[Live, list[str]]
) -> None:
    with viewer.page.expect_response(lambda r: "/dicomweb/studies?" in r.url) as listed:
        viewer.page.goto(viewer_live[0].url + "/viewer/")
    assert listed.value.status == 200
    assert len(listed.value.json()) == 2
    viewer.page.wait_for_timeout(1500)
    assert viewer.bad == [] and viewer.errors == []
    config = viewer.page.evaluate("() => JSON.stringify(window.config)")
    assert "dvt_" not in config and "Bearer" not in config


def test_without_a_session_the_viewer_sends_to_the_login(
    playwright_browser: Any, viewer_live: tuple[Live, list[str]]
) -> None:
    context = playwright_browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{viewer_live[0].url}/viewer/viewer?StudyInstanceUIDs={viewer_live[1][0]}")
        assert page.url.endswith("/console/login")
    finally:
        context.close()


def test_package_is_cached_for_ci() -> None:
    require("the OHIF package cache", ohif_package().is_file())
