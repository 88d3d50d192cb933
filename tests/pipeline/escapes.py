"""Watching for writes that leave their root, and real files that used to cause them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

#: pydicom test files without PatientID (their output key started with ``/``).
NO_PATIENT_ID = (
    "ExplVR_BigEnd.dcm",
    "ExplVR_BigEndNoMeta.dcm",
    "ExplVR_LitEndNoMeta.dcm",
    "GDCMJ2K_TextGBR.dcm",
)


def _tree(folder: Path) -> set[Path]:
    return {Path(root) / name for root, dirs, files in os.walk(folder) for name in dirs + files}


@contextmanager
def nothing_written_outside(watched: Path, *allowed: Path) -> Iterator[None]:
    """Assert that the block creates nothing under ``watched`` except under ``allowed``,
    and nothing at the file-system root (where an absolute output key used to land).

    The key folder of ``$DICOMVEIL_HOME`` (``<home>.keys``, where the audit key is created:
    :func:`dicomveil.keystore.separate_key_folder`) is state too, so it is allowed."""
    from dicomveil.keystore import separate_key_folder

    home = os.environ.get("DICOMVEIL_HOME")
    if home:
        allowed = (*allowed, separate_key_folder(Path(home)))
    root_before = set(os.listdir("/"))
    before = _tree(watched)
    yield
    created = {
        path
        for path in _tree(watched) - before
        if not any(path == a or path.is_relative_to(a) for a in allowed)
    }
    assert created == set(), f"written outside its root: {sorted(map(str, created))[:5]}"
    assert set(os.listdir("/")) - root_before == set(), "written at the file-system root"


def identifier_less_inputs(folder: Path) -> list[Path]:
    """Real files without PatientID (pydicom's) or StudyID, and one without both."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in NO_PATIENT_ID:
        paths.append(Path(shutil.copy(get_testdata_file(name), folder / name)))
    for name, remove in (
        ("CT_small.dcm", ("PatientID",)),
        ("MR_small.dcm", ("StudyID",)),
        ("rtplan.dcm", ("PatientID", "StudyID", "PatientName")),
    ):
        ds = pydicom.dcmread(get_testdata_file(name))
        for keyword in remove:
            if keyword in ds:
                delattr(ds, keyword)
        ds.save_as(folder / f"no-{'-'.join(remove)}-{name}")
        paths.append(folder / f"no-{'-'.join(remove)}-{name}")
    return paths
