"""Where an upload's parts are spooled: anonymous memory while they fit, the workspace beyond.

Where the system offers it (Linux ``memfd_create`` with ``/proc``), each part goes to an
anonymous in-memory file: it has a file descriptor and a path (``/proc/<pid>/fd/N``), so the
pipeline reads it like any file, in this process or in the gateway's engine processes, yet
nothing of it lands on disk and no file is created or removed per part. The parts of one
request share a memory budget; a part that would exceed it moves to a file in the request's
workspace (mode 0600), where every part goes when anonymous files are not available (or the
engine processes cannot read them). :meth:`Spool.close` releases the memory.

An anonymous file stays open until the request ends (it has no other name), so they are
also budgeted in file descriptors: at most :data:`MAX_OPEN_PER_REQUEST` per request and
:data:`MAX_OPEN_PER_PROCESS` across the process; further parts go to the workspace, where a
part's file is closed as soon as it is written. A request of a thousand tiny parts then
holds a few dozen descriptors, not a thousand, and cannot starve other clients.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Final

__all__ = [
    "MAX_OPEN_PER_PROCESS",
    "MAX_OPEN_PER_REQUEST",
    "MEMORY_BUDGET",
    "Spool",
    "SpoolFile",
]

MEMORY_BUDGET: Final = 64 * 1024 * 1024
"""Bytes of one request's parts held in memory; later parts go to files."""

MAX_OPEN_PER_REQUEST: Final = 32
"""Anonymous memory files (open descriptors) one request may hold."""
MAX_OPEN_PER_PROCESS: Final = 256
"""Anonymous memory files the whole process may hold."""

_IN_MEMORY: Final = hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)


class _Descriptors:
    """The process-wide count of open anonymous memory files."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                return False
            self.used += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.used -= 1


_DESCRIPTORS: Final = _Descriptors(MAX_OPEN_PER_PROCESS)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class SpoolFile:
    """One part being spooled: append with :meth:`write`, read back through :attr:`path`."""

    def __init__(self, spool: Spool, name: str) -> None:
        self._spool, self._name = spool, name
        self.size = 0
        self.in_memory = (
            _IN_MEMORY
            and spool.used < spool.budget
            and spool.open_in_memory < spool.max_open
            and _DESCRIPTORS.take()
        )
        if self.in_memory:
            try:
                self._fd = os.memfd_create("dicomveil-upload", os.MFD_CLOEXEC)
            except OSError:
                _DESCRIPTORS.give_back()
                raise
            spool.open_in_memory += 1
            self.path = Path(f"/proc/{os.getpid()}/fd/{self._fd}")
        else:
            self._fd, self.path = self._on_disk()

    def _on_disk(self) -> tuple[int, Path]:
        self._spool.folder.mkdir(mode=0o700, exist_ok=True)
        path = self._spool.folder / self._name
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC
        return os.open(path, flags, 0o600), path

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data`` (moving the part to disk when the memory budget runs out)."""
        if self.in_memory and self._spool.used + len(data) > self._spool.budget:
            self._spill()
        _write_all(self._fd, data)
        self.size += len(data)
        if self.in_memory:
            self._spool.used += len(data)

    def _spill(self) -> None:
        memory = self._fd
        self._fd, self.path = self._on_disk()
        done = 0
        while done < self.size:
            chunk = os.pread(memory, min(self.size - done, 1 << 20), done)
            _write_all(self._fd, chunk)
            done += len(chunk)
        os.close(memory)
        self._spool.used -= self.size
        self._release_memory()

    def finish(self) -> None:
        """Stop writing (a part on disk is closed; one in memory stays open to be read)."""
        if not self.in_memory and self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def close(self) -> None:
        """Release the part (its memory, or its file handle)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self.in_memory:
            self._spool.used -= self.size
            self._release_memory()

    def _release_memory(self) -> None:
        self.in_memory = False
        self._spool.open_in_memory -= 1
        _DESCRIPTORS.give_back()


class Spool:
    """The parts of one request.

    Parameters
    ----------
    folder
        The request's private folder, for parts that do not stay in memory.
    budget
        Bytes held in memory across the request's parts.
    max_open
        Parts held in memory (open descriptors) at most.
    """

    def __init__(
        self, folder: Path, budget: int = MEMORY_BUDGET, max_open: int = MAX_OPEN_PER_REQUEST
    ) -> None:
        self.folder, self.budget, self.max_open = folder, budget, max_open
        self.used = 0
        self.open_in_memory = 0
        self._files: list[SpoolFile] = []

    def create(self, name: str) -> SpoolFile:
        """Start a new part called ``name`` (its file name when it goes to disk)."""
        part = SpoolFile(self, name)
        self._files.append(part)
        return part

    def close(self) -> None:
        """Release every part (files on disk stay until the workspace is removed)."""
        files, self._files = self._files, []
        for part in files:
            part.close()
