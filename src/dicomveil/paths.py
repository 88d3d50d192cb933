"""Paths under a root, proven to stay there: the one primitive every write under a root uses.

A key (``PATIENT/STUDY/SERIES/INSTANCE.dcm``, a store's object key, a staged name) is joined to
its root only through :func:`contained_path` or a :class:`ContainedRoot`. Each segment is
checked first (:func:`check_segment`): not empty, not ``.`` or ``..``, no ``/`` or ``\\``, no
NUL or other control character, valid Unicode, at most :data:`MAX_SEGMENT_BYTES` bytes; then
the joined path is resolved (symbolic links followed) and must lie inside the resolved root.
Anything else raises :class:`~dicomveil.errors.UnsafePathError`, whose message says what is
wrong and never quotes the value (segments are built from pseudonyms, UIDs and names).

The final segment is checked by its name only, not resolved: writers replace it by a rename,
which does not follow a link there. Its folder is resolved and checked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from dicomveil.errors import UnsafePathError

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_SEGMENT_BYTES",
    "ContainedRoot",
    "check_segment",
    "contained_path",
    "key_segments",
    "segment_problem",
]

MAX_SEGMENT_BYTES: Final = 200
"""Longest segment, in UTF-8 bytes: below the usual 255-byte name limit, with room for the
temporary name a writer puts beside it (``.NAME.RANDOM.part``)."""
MAX_KEY_BYTES: Final = 1024
"""Longest key (all segments and separators), in UTF-8 bytes."""

_FORBIDDEN: Final = re.compile(r"[\x00-\x1f\x7f/\\]")


def segment_problem(segment: str, max_bytes: int = MAX_SEGMENT_BYTES) -> str | None:
    """Return why ``segment`` cannot be one path segment (value-free), or ``None``."""
    if not isinstance(segment, str):
        return "is not text"
    if segment in ("", ".", ".."):
        return "is empty, '.' or '..'"
    if _FORBIDDEN.search(segment):
        return "contains a separator or a control character"
    try:
        size = len(segment.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid Unicode text"
    if size > max_bytes:
        return f"is longer than {max_bytes} bytes"
    return None


def check_segment(
    segment: str, what: str = "path segment", max_bytes: int = MAX_SEGMENT_BYTES
) -> str:
    """Return ``segment`` when it is one safe path segment.

    Raises
    ------
    UnsafePathError
        Naming ``what`` and the problem, never the value.
    """
    problem = segment_problem(segment, max_bytes)
    if problem is not None:
        raise UnsafePathError(f"{what} {problem}")
    return segment


def key_segments(key: str | Sequence[str], max_segment: int = MAX_SEGMENT_BYTES) -> list[str]:
    """Return the checked segments of a ``/``-separated key (or of a sequence of segments).

    Raises
    ------
    UnsafePathError
        For an empty or over-long key, or any unsafe segment (see :func:`segment_problem`).
    """
    parts = key.split("/") if isinstance(key, str) else list(key)
    if not parts or sum(len(p.encode("utf-8", "surrogatepass")) + 1 for p in parts) > (
        MAX_KEY_BYTES + 1
    ):
        raise UnsafePathError(f"a key must have 1 to {MAX_KEY_BYTES} bytes")
    for part in parts:
        check_segment(part, "a key segment", max_segment)
    return parts


def _inside(path: str, real_root: str) -> bool:
    real = os.path.realpath(path)
    return real == real_root or os.path.commonpath([real, real_root]) == real_root


def contained_path(
    root: Path | str,
    key: str | Sequence[str],
    *,
    whole: bool = False,
    max_segment: int = MAX_SEGMENT_BYTES,
) -> Path:
    """Return ``root`` joined with ``key``, once proven to stay inside ``root``.

    Every segment is checked (:func:`key_segments`, segments of at most ``max_segment``
    bytes); the folder of the result is resolved and must lie inside the resolved ``root``.
    The last segment is a checked name, which a rename replaces without following; with
    ``whole``, for a read, it is resolved too (a link there must not lead out either).

    Raises
    ------
    UnsafePathError
        When a segment is unsafe, or the path resolves outside ``root``.

    Examples
    --------
    >>> contained_path("/srv/out", "P1/S1/1.2.3.dcm").as_posix()
    '/srv/out/P1/S1/1.2.3.dcm'
    >>> contained_path("/srv/out", "/etc/passwd")
    Traceback (most recent call last):
    ...
    dicomveil.errors.UnsafePathError: a key segment is empty, '.' or '..'
    """
    path = Path(root).joinpath(*key_segments(key, max_segment))
    if not _inside(str(path if whole else path.parent), os.path.realpath(root)):
        raise UnsafePathError("a path resolves outside its root")
    return path


class ContainedRoot:
    """A root for many writes: :meth:`prepare` checks a key, makes its folder and returns
    the path, resolving each folder once (most outputs share a few folders).

    Use one per process: the folders already checked are remembered.
    """

    __slots__ = ("_made", "_real", "root")

    def __init__(self, root: Path | str) -> None:
        self.root = os.fspath(root)
        self._real = os.path.realpath(self.root)
        self._made: set[str] = set()

    def prepare(self, key: str | Sequence[str]) -> str:
        """Return the path of ``key`` under the root, its folder created and checked.

        Raises
        ------
        UnsafePathError
            As :func:`contained_path`.
        OSError
            When the folder cannot be created.
        """
        target = os.path.join(self.root, *key_segments(key))
        folder = os.path.dirname(target)
        if folder not in self._made:
            if not _inside(folder, self._real):  # before creating: a link leading out
                raise UnsafePathError("a path resolves outside its root")
            os.makedirs(folder, exist_ok=True)
            if not _inside(folder, self._real):
                raise UnsafePathError("a path resolves outside its root")
            if len(self._made) > 100_000:
                self._made.clear()
            self._made.add(folder)
        return target

    def forget(self, path: str) -> None:
        """Forget the folder of ``path`` (it was removed: the next :meth:`prepare` makes it)."""
        self._made.discard(os.path.dirname(path))
