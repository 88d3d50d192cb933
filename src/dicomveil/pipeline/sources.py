"""Finding the input files under SOURCE: regular files only, every other path named.

A folder handed to ``deid`` or ``batch`` may hold anything a file system can: FIFOs (whose
reader waits forever for a writer), devices (``/dev/zero`` never ends), symbolic links to
files outside it (``/proc/self/environ`` holds the process's secrets), folders that cannot
be listed. The rules, in order:

- SOURCE itself is taken as named, following a symbolic link (the operator chose it); what
  lies below it is judged against its real path.
- Names starting with ``.`` (hidden files and folders) are passed over, silently.
- Regular files are inputs.
- A symbolic link is followed when its target resolves *within SOURCE* and is a regular file;
  the input is then the target's real path, so nothing reads through a link afterwards.
  Links leading outside SOURCE, to folders (the files of a folder within SOURCE are found
  through their own path), to anything but a regular file, broken links and loops are not
  followed.
- FIFOs, sockets and devices are not read.
- A folder that cannot be listed is not read (with the system's reason).

Every path not read is reported as a :class:`Skipped` with a PHI-free reason (the path stays
with the caller, who shows it on the terminal only). Readers open inputs with
:func:`open_regular`, which refuses anything but a regular file without blocking.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = ["Inputs", "NotRegularFileError", "Skipped", "discover", "find_inputs", "open_regular"]

_OPEN_FLAGS: Final = (
    os.O_RDONLY
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOFOLLOW", 0)
)
"""Never wait for a FIFO's writer, never follow a last-component link."""


@dataclass(frozen=True, slots=True)
class Skipped:
    """A path under SOURCE that was not read.

    Attributes
    ----------
    path:
        The path as found (for the operator's terminal; never written to DEST).
    reason:
        Why it was not read, without any part of the path.
    """

    path: Path
    reason: str


@dataclass(slots=True)
class Inputs:
    """The inputs found under SOURCE, in order, and the paths that were not read."""

    files: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


class NotRegularFileError(OSError):
    """An input is not (or is no longer) a regular file."""


def _kind(mode: int) -> str:
    """Name the kind of a file that is not a regular file or a folder."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root if root.endswith(os.sep) else root + os.sep)


def _link(path: str, root: str) -> tuple[str | None, str]:
    """Judge a symbolic link: ``(real path, "")`` to follow it, else ``(None, reason)``."""
    target = os.path.realpath(path)
    if not _within(target, root):
        return None, "symbolic link leading outside SOURCE (not followed)"
    try:
        mode = os.stat(target).st_mode
    except OSError as exc:
        reason = "broken symbolic link" if isinstance(exc, FileNotFoundError) else exc.strerror
        return None, f"symbolic link not followed ({reason})"
    if stat.S_ISDIR(mode):
        return None, "symbolic link to a folder (not followed)"
    if not stat.S_ISREG(mode):
        return None, f"symbolic link to {_kind(mode)} (not read)"
    return target, ""


def discover(source: Path, on_skip: Callable[[Skipped], None] | None = None) -> Iterator[Path]:
    """Yield the input files under ``source`` (or ``source`` itself), in sorted order.

    Files of a folder come first (sorted by name), then its sub-folders, depth first, each
    sorted: the order of the former ``os.walk`` discovery. Whether a file is DICOM is
    decided by its content when it is read, not by its name.

    Parameters
    ----------
    source:
        A file or a folder.
    on_skip:
        Called with each path that is not read (see the module's rules); hidden names are
        passed over without a call.
    """

    def skip(path: str | Path, reason: str) -> None:
        if on_skip is not None:
            on_skip(Skipped(Path(path), reason))

    try:
        mode = os.stat(source).st_mode  # SOURCE itself: followed, the operator named it
    except OSError as exc:
        skip(source, f"cannot be read ({exc.strerror})")
        return
    if not stat.S_ISDIR(mode):
        if stat.S_ISREG(mode):
            yield source
        else:
            skip(source, f"{_kind(mode)} (not read)")
        return
    root = os.path.realpath(source)
    stack = [str(source)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(
                    (e for e in listing if not e.name.startswith(".")), key=lambda e: e.name
                )
        except OSError as exc:
            skip(folder, f"folder cannot be read ({exc.strerror})")
            continue
        folders = []
        for entry in entries:
            try:
                if entry.is_symlink():
                    target, reason = _link(entry.path, root)
                    if target is None:
                        skip(entry.path, reason)
                    else:
                        yield Path(target)
                elif entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    yield Path(entry.path)
                else:
                    kind = _kind(entry.stat(follow_symlinks=False).st_mode)
                    skip(entry.path, f"{kind} (not read)")
            except OSError as exc:  # gone or unreadable since it was listed
                skip(entry.path, f"cannot be read ({exc.strerror})")
        stack.extend(reversed(folders))


def find_inputs(source: Path) -> Inputs:
    """Return every input under ``source`` and every path not read (see :func:`discover`)."""
    found = Inputs()
    found.files.extend(discover(source, found.skipped.append))
    return found


def open_regular(path: Path | str) -> int:
    """Open an input for reading and return the descriptor, only if it is a regular file.

    The file is opened without blocking (a FIFO's reader would otherwise wait for a writer)
    and without following a symbolic link in the last component (:func:`discover` hands
    out real paths), then checked with ``fstat``: what was checked is what is read.

    Raises
    ------
    NotRegularFileError
        The path is a FIFO, a device, a socket or a folder.
    OSError
        It cannot be opened (``ELOOP`` for a symbolic link).
    """
    fd = os.open(path, _OPEN_FLAGS)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else _kind(mode)
            raise NotRegularFileError(errno.EINVAL, f"not a regular file ({kind})")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd
