"""Low-level file helpers of the audit log: tail scanning and durable writes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["line_start", "lines_backwards", "stage_file", "write_all", "write_file"]

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


def stage_file(path: Path, data: bytes) -> Path:
    """Write ``data`` durably (mode 0600) beside ``path``, as ``path`` + ``.tmp``; return
    that file (``os.replace`` it onto ``path`` to publish it atomically)."""
    target = path.with_name(path.name + ".tmp")
    _write_durably(target, data)
    return target


def write_file(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Write ``data`` to ``path`` (mode 0600) durably; atomically when ``replace``."""
    if replace:
        os.replace(stage_file(path, data), path)
    else:
        _write_durably(path, data)


def _write_durably(target: Path, data: bytes) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def lines_backwards(path: Path, block: int = 1 << 16) -> Iterator[bytes]:
    """The complete lines of ``path`` from the last to the first (no newline); a torn last
    line is skipped."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        end = handle.seek(0, os.SEEK_END)
        tail = b""
        complete = False  # the bytes after the last newline are a torn line
        while end > 0:
            start = max(0, end - block)
            handle.seek(start)
            chunk = handle.read(end - start) + tail
            end = start
            lines = chunk.split(b"\n")
            tail = lines.pop(0)  # may continue in the block before
            if not complete:
                if not lines:  # no newline yet: still inside the last line
                    continue
                lines.pop()  # after the last newline: nothing, or a torn line
                complete = True
            yield from reversed([line for line in lines if line])
        if tail and complete:
            yield tail
