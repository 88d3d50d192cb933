"""Fixtures of the browser tests: Chromium through playwright, a live gateway with PHI planted.

Chromium is Debian's ``/usr/bin/chromium`` (``playwright install`` cannot download here);
playwright drives it with ``executable_path``. Missing either skips on a developer's machine
and fails under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dicomveil.demo import write_demo_study
from dicomveil.web import Settings
from tests.support.servers import require
from tests.web.console.live import Live, live_gateway, store_files
from tests.web.support import TEST_KEY

CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]


def chromium_path() -> str | None:
    """Debian's Chromium, or the one named by ``DICOMVEIL_CHROMIUM``."""
    named = os.environ.get("DICOMVEIL_CHROMIUM")
    return named or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def playwright_browser() -> Iterator[Any]:
    """One headless Chromium per module (stopped before other modules' asyncio tests run)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    require("the Python package playwright", sync_playwright)
    executable = chromium_path()
    require("chromium", executable)
    assert sync_playwright is not None and executable is not None
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def demo_originals(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The demo study's originals: two patients, full of PHI."""
    folder = tmp_path_factory.mktemp("originals")
    return write_demo_study(folder, patients=2, series_per_study=1, images_per_series=3)


def gateway_settings(home: Path, key_file: Path, **extra: Any) -> Settings:
    """Settings of a browser-test gateway: the defaults (Chromium keeps a ``Secure``,
    ``__Host-`` cookie from plain HTTP on loopback, which it deems potentially trustworthy)."""
    return Settings(home=home, key_file=key_file, deid_processes=1, **extra)


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory,
    demo_originals: list[Path],
    monkeypatch_module: pytest.MonkeyPatch,
) -> Iterator[Live]:
    """A live gateway with the demo study stored."""
    root = tmp_path_factory.mktemp("live")
    key_file = root / "pseudonym.key"
    key_file.write_text(TEST_KEY + "\n")
    home = root / "home"
    monkeypatch_module.setenv("DICOMVEIL_HOME", str(home))
    with live_gateway(gateway_settings(home, key_file)) as running:
        store_files(running, demo_originals)
        yield running


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    """A module-scoped monkeypatch (environment of the live gateway)."""
    patch = pytest.MonkeyPatch()
    for name in (
        "DICOMVEIL_KEY",
        "DICOMVEIL_VAULT_KEY",
        "DICOMVEIL_AUDIT_KEY",
        "DICOMVEIL_VAULT_URL",
    ):
        patch.delenv(name, raising=False)
        patch.delenv(f"{name}_FILE", raising=False)
    yield patch
    patch.undo()
