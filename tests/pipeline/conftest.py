"""Fixtures for the batch tests (none is autouse): a private state folder, a key, a study."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomveil.demo import write_demo_study
from tests.pipeline.batch_support import KEY, PATIENTS


@pytest.fixture
def batch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh ``$DICOMVEIL_HOME`` (vault, audit log, batches) and no key from the environment."""
    home = tmp_path / "home"
    monkeypatch.setenv("DICOMVEIL_HOME", str(home))
    for name in ("DICOMVEIL_KEY", "DICOMVEIL_VAULT_KEY", "DICOMVEIL_AUDIT_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    yield home


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """A pseudonym key file."""
    path = tmp_path / "pseudonym.key"
    path.write_text(KEY)
    return path


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """Three patients, one CT study each, two series of three images: 18 files, 3 studies."""
    folder = tmp_path / "in"
    write_demo_study(folder, patients=PATIENTS, series_per_study=2, images_per_series=3)
    return folder
