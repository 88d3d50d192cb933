"""Helpers for the DIMSE tests: PHI-planted studies, DCMTK runs, a node on a free port."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pydicom

from dicomveil.demo import write_demo_study
from dicomveil.dimse.settings import DimseSettings
from tests.support.servers import require

TEST_KEY = "dimse-test-pseudonym-key-0123456789abcdef"
NODE_AE = "DICOMVEIL"
SENDER_AE = "MODALITY"
CANARIES = (
    "CANARYNAME",
    "CANARYID4242",
    "CANARYACCESSION",
    "CANARYINSTITUTION",
    "CANARYPHYSICIAN",
)
"""Planted values no answer, file or log line of the node may hold."""


def phi_study(folder: Path, *, images: int = 3, series: int = 1, seed: int = 1) -> list[Path]:
    """Write one CT study with PHI sentinels planted in its header."""
    files = write_demo_study(
        folder, patients=1, series_per_study=series, images_per_series=images, seed=seed
    )
    for path in files:
        ds = pydicom.dcmread(path)
        ds.PatientName = f"{CANARIES[0]}^SEED{seed}"
        ds.PatientID = f"{CANARIES[1]}{seed}"
        ds.AccessionNumber = CANARIES[2]
        ds.InstitutionName = CANARIES[3]
        ds.ReferringPhysicianName = CANARIES[4]
        ds.save_as(path, enforce_file_format=True)
    return files


def assert_no_phi(data: bytes | str, where: str) -> None:
    """Fail when any planted value appears in ``data``."""
    text = data.encode("utf-8", "replace") if isinstance(data, str) else data
    for canary in CANARIES:
        assert canary.encode() not in text, f"{canary} found in {where}"


DCMTK_PATH = "/usr/bin:/usr/local/bin"
"""Where DCMTK is looked for first: pynetdicom installs Python apps of the same names
(``storescu``, ``findscu``...) into the virtual environment's ``bin``."""


def dcmtk_binary(name: str) -> str:
    """The DCMTK executable ``name`` (skip, or fail under CI, when DCMTK is missing)."""
    found = shutil.which(name, path=DCMTK_PATH)
    require(f"DCMTK `{name}`", found)
    assert found is not None
    return found


def dcmtk(name: str, *args: str | Path | int, cwd: Path | None = None, timeout: float = 60) -> Any:
    """Run a DCMTK tool; return the completed process (output as text)."""
    binary = dcmtk_binary(name)
    return subprocess.run(
        [binary, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def node_settings(**overrides: Any) -> DimseSettings:
    """Settings for a node on a free loopback port accepting SENDER_AE and READER."""
    base = DimseSettings(ae_title=NODE_AE, host="127.0.0.1", port=0)
    return replace(base, **overrides)


@contextmanager
def running_node(runtime: Any, settings: DimseSettings) -> Iterator[Any]:
    """Start a :class:`DimseNode` on ``runtime`` for the block; yield it."""
    from dicomveil.dimse.server import DimseNode

    node = DimseNode(runtime, settings)
    node.start()
    try:
        yield node
    finally:
        node.stop(grace=2)


def files_in(folder: Path) -> Sequence[Path]:
    """Every file under ``folder``, sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file())


def client_ae(*contexts: str, ae_title: str = SENDER_AE) -> Any:
    """A pynetdicom requestor proposing ``contexts`` (abstract syntaxes)."""
    from pynetdicom import AE

    ae = AE(ae_title=ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for context in contexts:
        ae.add_requested_context(context)
    return ae


def study_uids(runtime: Any) -> list[str]:
    """The pseudonymous Study Instance UIDs in the runtime's index."""
    from dicomveil.index import Level, Query

    rows = runtime.index.search(Query(Level.STUDY, limit=1000)).rows
    return [str(row.values["StudyInstanceUID"]) for row in rows]


def audit_entries(runtime: Any, event: str) -> list[Any]:
    """The runtime's audit entries of kind ``event``."""
    return [entry for entry in runtime.audit.entries() if entry.event == event]
