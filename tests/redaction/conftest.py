"""Fixtures of the clean-pixel-data tests: a fresh state folder and a key file, the OCR
model loaded once per session, and helpers that write a rendered sample, clean it and read
the result back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from benchmarks.pixel_corpus import Sample, to_dataset
from pydicom.dataset import Dataset

from tests.support.cloud import require_module


@pytest.fixture(autouse=True)
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ``DICOMVEIL_HOME`` for each test (quarantine, vault, runs), no key in the
    environment."""
    home = tmp_path / "home"
    monkeypatch.setenv("DICOMVEIL_HOME", str(home))
    monkeypatch.delenv("DICOMVEIL_KEY", raising=False)
    return home


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """A pseudonym key file."""
    path = tmp_path / "pseudonym.key"
    path.write_text("test-pseudonym-key-0123456789abcdef\n")
    return path


@pytest.fixture(scope="session")
def finder() -> Any:
    """The process's text finder (about 1 s to load; shared by every test)."""
    require_module("rapidocr", "dicomveil[redaction]")
    from dicomveil.redaction import text_finder

    return text_finder()


@dataclass
class Cleaned:
    """A cleaned instance: the dataset written and read back, and what the cleaner said."""

    before: Dataset
    after: Dataset
    regions: int
    path: Path

    def frames(self) -> tuple[np.ndarray, np.ndarray]:
        """Stored values before and after, ``(frames, rows, columns[, samples])``."""
        a, b = self.before.pixel_array, self.after.pixel_array
        if int(self.before.get("NumberOfFrames", 1) or 1) == 1:
            a, b = a[None], b[None]
        return a, b


@pytest.fixture
def clean(finder: Any, tmp_path: Path) -> Callable[..., Cleaned]:
    """Write a sample (or dataset), clean it the way the pipeline does, read it back."""
    from dicomveil.dicomio import read_instance, write_instance
    from dicomveil.redaction import clean_instance

    def run(source: Sample | Dataset, name: str = "in") -> Cleaned:
        ds = to_dataset(source) if isinstance(source, Sample) else source
        path = tmp_path / f"{name}.dcm"
        ds.save_as(path, enforce_file_format=True)
        instance = read_instance(path)
        result = clean_instance(instance, finder)
        out = tmp_path / f"{name}-out.dcm"
        write_instance(result.instance, instance.dataset, None, out)
        return Cleaned(pydicom.dcmread(path), pydicom.dcmread(out), result.regions, out)

    return run
