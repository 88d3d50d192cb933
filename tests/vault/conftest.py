"""Fixtures for the vault tests: SQLite always, PostgreSQL started by the session.

The PostgreSQL server (initdb + pg_ctl on a free port, fsync off) starts once, only when a
test asks for it, and is stopped in ``finally``. Each test gets a fresh database in it.
As root the server runs as the ``postgres`` user through ``runuser``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import free_port, require, require_binary

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SECRET = b"vault-secret-for-tests-0123456789"
OTHER_SECRET = b"another-vault-secret-9876543210"


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server on loopback for the session; yields its base URL."""
    initdb = require_binary("initdb", str(PG_BIN / "initdb"))
    pg_ctl = require_binary("pg_ctl", str(PG_BIN / "pg_ctl"))
    require("psycopg (Python package)", importlib.util.find_spec("psycopg"))
    root = Path(tempfile.mkdtemp(prefix="dicomveil-pg-"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    started = False
    try:
        subprocess.run(
            _as_postgres(
                [
                    initdb,
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )
        options = (
            f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off"
        )
        subprocess.run(
            _as_postgres(
                [pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-o", options, "start"]
            ),
            check=True,
            capture_output=True,
        )
        started = True
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        if started:
            subprocess.run(
                _as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
                check=False,
                capture_output=True,
            )
        shutil.rmtree(root, ignore_errors=True)


def _new_database(base: str) -> str:
    import psycopg

    name = f"vault_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(
        base.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base}/{name}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server)])
def vault_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of a new, empty vault on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'vault.sqlite'}"
    return _new_database(request.getfixturevalue("postgres_url"))
