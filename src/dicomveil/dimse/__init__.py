"""dicomveil as a DICOM node (pynetdicom): C-ECHO, C-STORE into the ingest service, and
C-FIND / C-GET / C-MOVE on the de-identified archive.

Imports pynetdicom only when a node is built (``pip install 'dicomveil[dimse]'``).
"""

from __future__ import annotations

from dicomveil.dimse.settings import DimseSettings, Role, load_dimse_settings

__all__ = ["DimseSettings", "Role", "load_dimse_settings"]
