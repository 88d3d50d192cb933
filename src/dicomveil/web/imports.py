"""Where a batch's inputs may come from: a folder under the import root, or an upload.

A server-side folder must lie under the configured import root: a path that is absolute
elsewhere, that climbs out with ``..``, or that holds (or is) a symbolic link leading out of
the root is refused with 403, as is every folder when no import root is configured. An
uploaded zip is extracted entry by entry with the same rules (no absolute names, no ``..``,
no links) and bounded size, so a crafted archive can neither write outside its folder nor
fill the disk.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path, PurePosixPath
from typing import Final

from dicomveil.errors import UnsafePathError
from dicomveil.paths import contained_path
from dicomveil.web.errors import BadRequest, Forbidden, PayloadTooLarge

__all__ = ["extract_zip", "move_into", "resolve_import"]

MAX_ZIP_ENTRIES: Final = 100_000


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def resolve_import(root: Path | None, requested: str) -> Path:
    """Return the folder (or file) ``requested`` names under ``root``, resolved.

    ``requested`` is relative to the root, or absolute inside it.

    Raises
    ------
    Forbidden
        No import root, or the path (or a link under it) leads outside the root.
    BadRequest
        The path does not exist.
    """
    if root is None:
        raise Forbidden("server-side batches are disabled (no import root is configured)")
    if "\x00" in requested or not requested.strip():
        raise BadRequest("the folder name is empty or invalid")
    real_root = root.resolve()
    parts = PurePosixPath(requested).parts
    if ".." in parts:
        raise Forbidden("the folder must lie under the import root ('..' is not allowed)")
    candidate = Path(requested) if Path(requested).is_absolute() else real_root / requested
    resolved = candidate.resolve()
    if not _inside(resolved, real_root):
        raise Forbidden("the folder must lie under the import root")
    if not resolved.exists():
        raise BadRequest("no such folder under the import root")
    if resolved.is_dir():
        for folder, dirs, files in os.walk(resolved):
            for name in [*dirs, *files]:
                entry = Path(folder) / name
                if entry.is_symlink() and not _inside(entry.resolve(), real_root):
                    raise Forbidden("the folder holds a link leading outside the import root")
    return resolved


MAX_ZIP_RATIO: Final = 200
"""Largest expansion of a zip upload: uncompressed bytes per byte of the zip file (with a
floor of 1 MiB of zip), beyond which it is refused as a zip bomb."""


def extract_zip(archive: Path, target: Path, *, max_bytes: int) -> int:
    """Extract ``archive`` into ``target`` safely; return the number of files.

    The expansion is counted as it is written (declared sizes are not trusted) and capped
    at ``max_bytes`` and at :data:`MAX_ZIP_RATIO` times the zip's size.

    Raises
    ------
    BadRequest
        Not a zip file, or an entry with an absolute name, ``..`` or a link.
    PayloadTooLarge
        More than ``max_bytes`` uncompressed, an expansion ratio above
        :data:`MAX_ZIP_RATIO`, or too many entries.
    """
    limit = min(max_bytes, MAX_ZIP_RATIO * max(archive.stat().st_size, 1 << 20))
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError):
        raise BadRequest("the upload is not a valid zip file") from None
    with bundle:
        entries = bundle.infolist()
        if len(entries) > MAX_ZIP_ENTRIES:
            raise PayloadTooLarge(f"the zip holds more than {MAX_ZIP_ENTRIES} entries")
        total, count = 0, 0
        for entry in entries:
            name = PurePosixPath(entry.filename.replace("\\", "/"))
            mode = entry.external_attr >> 16
            if name.is_absolute() or ".." in name.parts or (mode & 0o170000) == 0o120000:
                raise BadRequest("the zip holds an absolute path, '..' or a link")
            if entry.is_dir():
                continue
            try:
                destination = contained_path(target, name.parts)
            except UnsafePathError:
                raise BadRequest("the zip holds an entry name that is not a safe path") from None
            destination.parent.mkdir(parents=True, exist_ok=True)
            with bundle.open(entry) as source, destination.open("wb") as out:
                while chunk := source.read(1 << 20):
                    total += len(chunk)
                    if total > limit:
                        raise PayloadTooLarge(f"the zip expands to more than {limit} bytes")
                    out.write(chunk)
            count += 1
    return count


def move_into(parts: list[Path], target: Path) -> None:
    """Move uploaded files into ``target`` (numbered: client file names are not trusted)."""
    target.mkdir(parents=True, exist_ok=True)
    for number, part in enumerate(parts, start=1):
        shutil.move(part, target / f"upload-{number:05d}.dcm")
