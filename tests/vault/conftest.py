"""Fixtures for the vault tests: SQLite always, PostgreSQL started by the session.

The PostgreSQL server is the session's ``postgres_url`` (``tests/conftest.py``); each test
gets a fresh database in it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import create_postgres_database

SECRET = b"vault-secret-for-tests-0123456789"
OTHER_SECRET = b"another-vault-secret-9876543210"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server)])
def vault_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of a new, empty vault on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'vault.sqlite'}"
    return create_postgres_database(request.getfixturevalue("postgres_url"), "vault")
