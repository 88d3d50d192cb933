"""Fixtures of the shared-state tests: the shared database, on SQLite and on PostgreSQL.

``shared_db`` runs each test on both backends (the same code must serve both);
``own_postgres`` is a private PostgreSQL server the test may stop and start again (the
session server of ``postgres_url`` is shared by other tests and must stay up).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PG_BIN, _as_postgres, create_postgres_database
from tests.support.servers import free_port, require_binary


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A shared database URL: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared' / 'state.sqlite'}"
    base = request.getfixturevalue("postgres_url")
    return create_postgres_database(base, "state")


class OwnPostgres:
    """A PostgreSQL server of one test: :meth:`stop` (immediate, as a crash) and :meth:`start`."""

    def __init__(self, root: Path) -> None:
        self.root, self.data, self.port = root, root / "data", free_port()
        self.pg_ctl = require_binary("pg_ctl", str(PG_BIN / "pg_ctl"))
        initdb = require_binary("initdb", str(PG_BIN / "initdb"))
        init = [initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync"]
        subprocess.run(_as_postgres(init), check=True, capture_output=True)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        log = str(self.root / "log")
        run = [self.pg_ctl, "-D", str(self.data), "-l", log, "-w", "-o", options, "start"]
        subprocess.run(_as_postgres(run), check=True, capture_output=True)

    def stop(self) -> None:
        stop = [self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"]
        subprocess.run(_as_postgres(stop), check=False, capture_output=True)


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    """A private PostgreSQL server, started; stopped and removed after the test."""
    root = Path(tempfile.mkdtemp(prefix="dicomveil-own-pg-"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    server = OwnPostgres(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
