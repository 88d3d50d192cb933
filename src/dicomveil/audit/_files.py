"""Low-level file helpers of the audit log: tail scanning and durable writes."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["line_start", "write_all", "write_file"]

_TAIL_CHUNK = 1 << 16


def line_start(fd: int, end: int) -> int:
    """Return the offset just after the last newline before ``end`` (0 if there is none)."""
    position = end
    while position > 0:
        start = max(0, position - _TAIL_CHUNK)
        found = os.pread(fd, position - start, start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        position = start
    return 0


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_file(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Write ``data`` to ``path`` (mode 0600) durably; atomically when ``replace``."""
    target = path.with_name(path.name + ".tmp") if replace else path
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if replace:
        os.replace(target, path)
