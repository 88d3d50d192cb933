"""The batch manifest: ``manifest.json`` at the root of a batch, what a reader picks up.

Format (``format_version`` 1)::

    {
      "format_version": 1,
      "batch_id": "01JD3Q...",            # opaque
      "priority": "STAT",                 # STAT | URGENT | ROUTINE
      "organization": "HOSP1",            # may be ""
      "created_at": "2025-01-31T12:00:00Z",
      "generator": "dicomveil 0.1.0",
      "total_studies": 2,
      "total_images": 20,
      "total_bytes": 10485760,
      "studies": [
        {"study_id": "S...", "modalities": ["CT"], "image_count": 10,
         "files": [{"path": "S.../2.25.../2.25....dcm", "size": 524288, "sha256": "..."}]}
      ]
    }

``path`` is relative to the batch root (the folder holding the manifest), ``sha256`` is the
digest of the stored object. Studies are sorted by id and files by path, so the same batch
always gives the same bytes. Everything in it is a pseudonym, a count or a digest: **no PHI**.
The manifest is uploaded last; a reader that sees it sees a complete batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_CONTENT_TYPE",
    "MANIFEST_NAME",
    "ManifestFile",
    "build_manifest",
    "encode_manifest",
]

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
MANIFEST_CONTENT_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class ManifestFile:
    """One stored instance of the batch."""

    path: str
    study_id: str
    modality: str
    size: int
    sha256: str


def build_manifest(header: Mapping[str, Any], files: Iterable[ManifestFile]) -> dict[str, Any]:
    """Return the manifest of a batch.

    Parameters
    ----------
    header
        ``batch_id``, ``priority``, ``organization``, ``created_at`` (and optionally
        ``generator``), copied in this order.
    files
        The stored instances; a path listed twice is counted once.

    Returns
    -------
    dict
        The manifest, ready for :func:`encode_manifest`.
    """
    by_path = {f.path: f for f in files}
    studies: dict[str, list[ManifestFile]] = {}
    for item in by_path.values():
        studies.setdefault(item.study_id, []).append(item)
    entries = [
        {
            "study_id": study_id,
            "modalities": sorted({f.modality for f in members if f.modality}),
            "image_count": len(members),
            "files": [
                {"path": f.path, "size": f.size, "sha256": f.sha256}
                for f in sorted(members, key=lambda f: f.path)
            ],
        }
        for study_id, members in sorted(studies.items())
    ]
    names = ("batch_id", "priority", "organization", "created_at", "generator")
    return {
        "format_version": FORMAT_VERSION,
        **{name: header[name] for name in names if name in header},
        "total_studies": len(entries),
        "total_images": len(by_path),
        "total_bytes": sum(f.size for f in by_path.values()),
        "studies": entries,
    }


def encode_manifest(manifest: Mapping[str, Any]) -> bytes:
    """Return the manifest as UTF-8 JSON bytes (indented, stable, ending with a newline)."""
    return (json.dumps(manifest, indent=2, ensure_ascii=True) + "\n").encode("utf-8")
