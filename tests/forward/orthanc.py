"""Orthanc as the receiver of forwarded studies: C-STORE SCP and DICOMweb (STOW-RS) server.

Started ``--verbose`` on free loopback ports, so its log has one ``Incoming Store request``
line per C-STORE it received: the count proves nothing was sent twice (Orthanc itself keeps
one copy of a re-sent instance, so its instance count alone cannot tell).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.web.orthanc_server import running_orthanc

AET = "ORTHANC"


@dataclass(frozen=True, slots=True)
class Orthanc:
    """A running Orthanc: REST base URL, DICOM port, log file."""

    url: str
    dicom_port: int
    log: Path

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def count(self) -> int:
        return int(httpx.get(f"{self.url}/statistics", timeout=10).json()["CountInstances"])

    def stores_received(self) -> int:
        """C-STORE requests received so far (duplicates included)."""
        return self.log.read_text(errors="replace").count("Incoming Store request")

    def files(self) -> list[bytes]:
        """Every stored instance, as the DICOM file Orthanc keeps."""
        ids = httpx.get(f"{self.url}/instances", timeout=10).json()
        return [httpx.get(f"{self.url}/instances/{i}/file", timeout=30).content for i in ids]


@contextmanager
def running_receiver(folder: Path) -> Iterator[Orthanc]:
    """Run Orthanc (DICOMweb plugin on, ``--verbose``) until the block ends."""
    # Default settings: DCMTK's TCP_NODELAY variable (Orthanc's DICOM stack) would halve its
    # C-STORE latency, but with it Orthanc 1.10 here now and then leaves a C-STORE unanswered.
    extra = {"Name": "forward-test", "DicomAet": AET, "DicomAlwaysAllowStore": True}
    with running_orthanc(folder, extra=extra, verbose=True) as url:
        system = httpx.get(url + "/system", timeout=10).json()
        yield Orthanc(url, int(system["DicomPort"]), folder / "orthanc.log")
