"""Fixtures for command-line tests: an isolated state folder and a demo study."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomveil.demo import write_demo_study


@pytest.fixture(autouse=True)
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own $DICOMVEIL_HOME and no key from the environment."""
    home = tmp_path / "home"
    monkeypatch.setenv("DICOMVEIL_HOME", str(home))
    for var in ("DICOMVEIL_KEY", "DICOMVEIL_VAULT_KEY", "DICOMVEIL_AUDIT_KEY"):
        monkeypatch.delenv(var, raising=False)
    yield home


@pytest.fixture
def demo_study(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    write_demo_study(folder, patients=3, series_per_study=2, images_per_series=3)
    return folder


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "pseudonym.key"
    path.write_text("test-pseudonym-key-0123456789abcdef\n")
    return path
