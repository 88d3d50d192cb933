"""Fixtures and helpers for the dicomio tests."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileDataset

from tests.dicomio.synth import write_ct_slice

PYDICOM_DATA = Path(pydicom.__file__).parent / "data"


def pydicom_files() -> list[Path]:
    """Every file shipped in pydicom's ``test_files`` (recursively) and ``charset_files``."""
    roots = (PYDICOM_DATA / "test_files", PYDICOM_DATA / "charset_files")
    return sorted(p for root in roots for p in root.rglob("*") if p.is_file())


def file_id(path: Path) -> str:
    """A readable test id for a pydicom data file."""
    return str(path.relative_to(PYDICOM_DATA))


def dcmread_quiet(path: Path, *, force: bool = False) -> FileDataset:
    """Read with pydicom, silencing its warnings about the odd files it ships on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=force)


def comparable(ds: Dataset) -> dict[int, object]:
    """The elements that a round trip must preserve: no group lengths, no groups < 0008."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {int(tag): ds[tag] for tag in ds.keys() if tag.element != 0 and tag.group >= 0x0008}


def sha256_range(path: Path, offset: int, length: int) -> str:
    """SHA-256 of `length` bytes at `offset` of `path`, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fp:
        fp.seek(offset)
        remaining = length
        while remaining:
            chunk = fp.read(min(remaining, 1 << 20))
            assert chunk, "file shorter than expected"
            digest.update(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


@pytest.fixture
def ct_file(tmp_path: Path) -> Path:
    """A small synthetic CT slice (explicit VR little endian, 64x64)."""
    path = tmp_path / "ct.dcm"
    write_ct_slice(path, 1, rows=64, cols=64)
    return path


@pytest.fixture
def out_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty output folder."""
    folder = tmp_path / "out"
    folder.mkdir()
    yield folder
