"""The gateway's staging folders under ``$DICOMVEIL_HOME/spool``, and sweeping up after a crash.

Uploads are spooled (and de-identified files staged) in a private folder per server process,
removed when the process closes. A process that crashes or is killed leaves its folder
behind, full of raw uploads: PHI at rest. Each live process therefore holds an exclusive
``flock`` on its folder for as long as it runs, and every process claiming a new folder
first removes everything in the spool that no live process holds. Claiming and sweeping
happen under one lock on the spool itself, so two processes starting together (``serve
--workers N``) never remove each other's folder.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

__all__ = ["StagingFolder", "claim_staging", "stale_spool", "sweep_spool"]

log = logging.getLogger("dicomveil.web")

_LOCK_NAME: Final = ".lock"


class StagingFolder:
    """A claimed staging folder: :attr:`path`, locked until :meth:`release`."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd

    def release(self) -> None:
        """Remove the folder and drop its lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@contextmanager
def _spool_locked(spool: Path) -> Iterator[None]:
    fd = os.open(spool / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _held(path: Path) -> bool:
    """Whether a live process holds ``path`` (a folder) locked."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock just taken
    return False


def _sweep(spool: Path) -> int:
    removed = 0
    for entry in spool.iterdir():
        if entry.name == _LOCK_NAME:
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                if _held(entry):
                    continue
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            continue
        removed += 1
    if removed:
        log.warning("removed %d upload folder(s) left in the spool by a stopped server", removed)
    return removed


def stale_spool(spool: Path, older_than: float, now: float, *, remove: bool) -> list[float]:
    """The ages (seconds) of the spool entries no live process holds, last changed more than
    ``older_than`` seconds before ``now``; removed when ``remove`` (retention)."""
    if not spool.is_dir():
        return []
    ages = []
    with _spool_locked(spool):
        for entry in spool.iterdir():
            try:
                age = now - entry.lstat().st_mtime
                if entry.name == _LOCK_NAME or age <= older_than:
                    continue
                folder = entry.is_dir() and not entry.is_symlink()
                if folder and _held(entry):
                    continue
                if remove:
                    shutil.rmtree(entry) if folder else entry.unlink()
            except OSError:
                continue
            ages.append(age)
    return ages


def sweep_spool(spool: Path) -> int:
    """Remove whatever in ``spool`` no live process holds; return how many entries."""
    spool.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _spool_locked(spool):
        return _sweep(spool)


def claim_staging(spool: Path) -> StagingFolder:
    """Sweep ``spool``, then create and lock a new private staging folder in it."""
    spool.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _spool_locked(spool):
        _sweep(spool)
        path = Path(tempfile.mkdtemp(prefix="gateway-", dir=spool))
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return StagingFolder(path, fd)
