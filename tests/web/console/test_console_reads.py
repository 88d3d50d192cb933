"""Console reads of the archive are audited like QIDO-RS/WADO-RS: one ``archive.read`` entry
per studies page, naming the pseudonymous studies it showed (never a search value)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from dicomveil.audit import AuditLog
from tests.web.conftest import actor
from tests.web.console.test_console import browser, login  # noqa: F401 - fixture by name

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::UserWarning")]


async def test_studies_page_is_an_audited_archive_read(
    browser: httpx.AsyncClient,  # noqa: F811 - the fixture
    tokens: dict[str, str],
    archive: dict[str, list[str]],
    home: Path,
) -> None:
    await login(browser, tokens["read"])
    page = await browser.get("/console/studies", params={"PatientName": "SECRETSEARCH*"})
    assert page.status_code == 200
    page = await browser.get("/console/studies")
    assert page.status_code == 200
    reads = [e for e in AuditLog.open(home, create=False).entries() if e.event == "archive.read"]
    console = [e for e in reads if e.details["action"] == "GET /console/studies"]
    assert len(console) == 2
    empty, full = console
    assert empty.details["pseudo_study_uids"] == [] and empty.details["matches"] == 0
    assert full.details["pseudo_study_uids"] == sorted(archive["studies"])
    assert full.actor == actor(home, "read") and full.details["role"] == "read"
    assert "SECRETSEARCH" not in (home / "audit" / "audit.jsonl").read_text()
