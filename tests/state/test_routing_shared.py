"""The routing queue and study-completion tracking in the shared database: its default
place when ``--database`` is set (a schema of its own in PostgreSQL, a sibling file beside
SQLite), next to the vault's and index's tables."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, inspect

from dicomveil.database import store_url
from dicomveil.forward.queue import Arrival, ForwardQueue
from dicomveil.forward.settings import RoutingSettings, default_queue_url
from dicomveil.index import open_index


def test_queue_defaults_to_the_shared_database(shared_db: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert default_queue_url(home) == f"sqlite:///{home / 'routing.sqlite'}"  # as before
    settings = RoutingSettings.load(None, home=home, database_url=shared_db)
    assert settings.queue_url == store_url(shared_db, "routing")
    queue = ForwardQueue.open(settings.queue_url)
    index = open_index(store_url(shared_db, "index"))
    try:
        arrival = Arrival(
            "2.25.1",
            "dimse:MOD",
            "2.25.3",
            "2.25.2",
            "1.2.840.10008.5.1.4.1.1.2",
            "2.25.1/2.25.2/2.25.3.dcm",
            "CT",
            {},
        )
        queue.record_arrivals([arrival], now=100.0)
        (due,) = queue.open_rounds()  # what completion tracking reads back
        assert (due.study_uid, due.instances) == ("2.25.1", 1)
    finally:
        queue.close()
        index.close()
    assert not (home / "routing.sqlite").exists()
    if shared_db.startswith("postgresql"):
        engine = create_engine(shared_db)
        tables = set(inspect(engine).get_table_names(schema="dicomveil_routing"))
        index_tables = set(inspect(engine).get_table_names(schema="dicomveil_index"))
        engine.dispose()
        assert {"forward_arrivals", "forward_jobs"} <= tables
        assert "index_instances" in index_tables


def test_state_url_for_other_modules(tmp_path: Path) -> None:
    from dicomveil.database import state_url

    home = tmp_path / "home"
    assert state_url(home, "outbox", environ={}) == f"sqlite:///{home / 'outbox.sqlite'}"
    shared = "postgresql+psycopg://u@db/dicomveil"
    assert state_url(home, "outbox", shared) == shared
    environ = {"DICOMVEIL_DATABASE_URL": shared}
    assert state_url(home, "outbox", environ=environ) == shared
    vault = store_url(shared, "vault")
    assert vault.endswith("?options=-csearch_path%3Ddicomveil_vault")
    sqlite = f"sqlite:///{tmp_path / 'state.sqlite'}"
    assert store_url(sqlite, "index") == f"sqlite:///{tmp_path / 'state-index.sqlite'}"
