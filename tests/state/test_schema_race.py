"""Processes starting together on a new shared database (the workers of a cluster) create
its tables once, without one of them failing on the catalogue race of PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from dicomveil.audit.sql import SqlAuditLog
from dicomveil.events.outbox import Outbox
from dicomveil.forward.queue import ForwardQueue
from dicomveil.index.sql import SqlStudyIndex
from dicomveil.tokens_sql import SqlTokenStore
from dicomveil.uploads.registry import UploadRegistry
from tests.conftest import create_postgres_database

OPENERS = 8
ROUNDS = 3


def _openers(url: str, root: Path) -> dict[str, Callable[[], object]]:
    return {
        "audit": lambda: SqlAuditLog.connect(url, root / "audit", b"s" * 32).close(),
        "tokens": lambda: SqlTokenStore.open(url, root / "tokens.json").close(),
        "index": lambda: SqlStudyIndex(url).close(),
        "outbox": lambda: Outbox(url).close(),
        "uploads": lambda: UploadRegistry(url).close(),
        "routing": lambda: ForwardQueue.open(url).close(),
    }


@pytest.mark.parametrize("store", ["audit", "tokens", "index", "outbox", "uploads", "routing"])
def test_stores_opened_at_once_on_a_new_postgresql_database(
    store: str, postgres_url: str, tmp_path: Path
) -> None:
    for _ in range(ROUNDS):  # a race: give it several chances to show
        url = create_postgres_database(postgres_url, "race")
        assert _open_at_once(_openers(url, tmp_path)[store]) == []


def _open_at_once(open_store: Callable[[], object]) -> list[str]:
    """Run ``open_store`` in :data:`OPENERS` threads released together; the error names."""
    start, errors = threading.Barrier(OPENERS), list[str]()

    def opener() -> None:
        start.wait()
        try:
            open_store()
        except Exception as exc:  # noqa: BLE001 - collected and asserted by the caller
            errors.append(type(exc).__name__)

    threads = [threading.Thread(target=opener) for _ in range(OPENERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors
