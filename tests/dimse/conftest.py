"""Fixtures for the DIMSE tests: a runtime on a private state folder, a node on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomveil.runtime import Runtime
from dicomveil.settings import CoreSettings
from tests.dimse.support import TEST_KEY

KEY_VARIABLES = (
    "DICOMVEIL_KEY",
    "DICOMVEIL_VAULT_KEY",
    "DICOMVEIL_AUDIT_KEY",
    "DICOMVEIL_VAULT_URL",
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private $DICOMVEIL_HOME, with no key or URL from the environment."""
    folder = tmp_path / "home"
    monkeypatch.setenv("DICOMVEIL_HOME", str(folder))
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)
    for name in ("DICOMVEIL_STORAGE_URL", "DICOMVEIL_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)
    return folder


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "pseudonym.key"
    path.write_text(TEST_KEY + "\n")
    return path


@pytest.fixture
def runtime(home: Path, key_file: Path) -> Iterator[Runtime]:
    """The opened runtime the node serves (de-identifying in the test process)."""
    settings = CoreSettings.load(home=home, key_file=key_file, deid_processes=1)
    with Runtime.open(settings) as opened:
        yield opened
