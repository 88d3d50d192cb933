"""Copying byte spans between files: in the kernel when possible, hashed when asked."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from pathlib import Path
from typing import Final

from dicomveil.dicomio._encode import SourceSpan
from dicomveil.errors import MalformedInputError

__all__ = ["copy_span", "write_all", "write_parts"]

_CHUNK: Final = 1024 * 1024
KERNEL_COPY_ABOVE: Final = 8 * 1024 * 1024
"""Spans at least this long are copied by :func:`copy_span` in the kernel (and hashed in
parallel when asked); shorter ones it copies through a buffer (see :data:`KERNEL_COPY_MIN`
for what :func:`write_parts` does without a hash)."""
KERNEL_COPY_MIN: Final = 64 * 1024
"""Spans at least this long that need no hashing are copied in the kernel by write_parts.

``copy_file_range`` (what ``cp`` uses) copies page cache to page cache once, where a read
into a buffer and a write copy the bytes twice through user space. Measured on 2,000 files
of 0.5 MB, alternating runs on a busy 2-core machine: ``deid -j2`` took 1.29x the time of
``cp -r`` with the kernel copy, 1.87x with the buffer (median of 4).
"""
_HASH_CHUNK: Final = 8 * 1024 * 1024
PARALLEL_HASH_ABOVE: Final = 16 * 1024 * 1024
"""Spans at least this long are hashed in the calling thread while another one copies."""
_NO_FAST_COPY: Final = frozenset(
    {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM, errno.EBADF}
)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of `data` to `fd` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class _Buffers(threading.local):
    """One reusable read buffer per thread, so small copies allocate nothing."""

    def __init__(self) -> None:
        self.buffer = bytearray(_CHUNK)


_BUFFERS: Final = _Buffers()


def _writev_all(fd: int, pieces: list[bytes | memoryview]) -> None:
    written = os.writev(fd, pieces)
    total = sum(len(p) for p in pieces)
    if written < total:  # rare: finish piece by piece
        for piece in pieces:
            if written >= len(piece):
                written -= len(piece)
                continue
            write_all(fd, memoryview(piece)[written:])
            written = 0


def _read_exactly(src: int, view: memoryview, offset: int) -> None:
    done = 0
    while done < len(view):
        n = os.preadv(src, [view[done:]], offset + done)
        if n == 0:
            raise _shrank()
        done += n


def write_parts(
    out: int,
    parts: list[bytes | SourceSpan],
    source: Path | str | int,
    hasher: hashlib._Hash | None,
) -> int:
    """Write `parts` to `out`, copying spans of `source`; return the number of bytes.

    Bytes and short spans are gathered into a single ``writev``; spans of at least
    :data:`KERNEL_COPY_MIN` are copied in the kernel (unless hashed: then up to 1 MiB
    through the buffer, longer through :func:`copy_span`). The source (a path, or a
    descriptor open for reading, left open) is opened only if a span needs it.
    """
    pending: list[bytes | memoryview] = []
    buffer_free = True
    size = 0
    src = source if isinstance(source, int) else -1
    opened = False
    try:
        for part in parts:
            if isinstance(part, bytes):
                piece: bytes | memoryview = part
            else:
                if src < 0 and not isinstance(source, int):
                    src = os.open(source, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                    opened = True
                if hasher is None and part.length >= KERNEL_COPY_MIN:
                    if pending:
                        _writev_all(out, pending)
                        pending, buffer_free = [], True
                    done = _kernel_copy(src, out, part.offset, part.length)
                    if done < part.length:
                        _buffered_copy(src, out, part.offset + done, part.length - done, None)
                    size += part.length
                    continue
                if not (buffer_free and part.length <= _CHUNK):
                    if pending:
                        _writev_all(out, pending)
                        pending, buffer_free = [], True
                    copy_span(src, out, part.offset, part.length, hasher)
                    size += part.length
                    continue
                piece = memoryview(_BUFFERS.buffer)[: part.length]
                _read_exactly(src, piece, part.offset)
                buffer_free = False
            if hasher is not None:
                hasher.update(piece)
            pending.append(piece)
            size += len(piece)
        if pending:
            _writev_all(out, pending)
    finally:
        if opened:
            os.close(src)
    return size


def _shrank() -> MalformedInputError:
    return MalformedInputError("truncated: the source file shrank")


def _kernel_copy(src: int, dst: int, offset: int, length: int) -> int:
    """Copy with ``copy_file_range``, then ``sendfile``; return the bytes copied."""
    done = 0
    for method in ("copy_file_range", "sendfile"):
        try:
            while done < length:
                if method == "copy_file_range":
                    n = os.copy_file_range(src, dst, length - done, offset + done)
                else:
                    n = os.sendfile(dst, src, offset + done, length - done)
                if n == 0:
                    raise _shrank()
                done += n
            return done
        except OSError as exc:
            if exc.errno not in _NO_FAST_COPY:
                raise
    return done


def _buffered_copy(
    src: int, dst: int, offset: int, length: int, hasher: hashlib._Hash | None
) -> None:
    """Copy through the thread's 1 MiB buffer, hashing on the way."""
    view = memoryview(_BUFFERS.buffer)
    done = 0
    while done < length:
        n = os.preadv(src, [view[: min(len(view), length - done)]], offset + done)
        if n == 0:
            raise _shrank()
        if hasher is not None:
            hasher.update(view[:n])
        write_all(dst, view[:n])
        done += n


def _hash_range(src: int, offset: int, length: int, hasher: hashlib._Hash) -> None:
    buf = bytearray(min(_HASH_CHUNK, length) or 1)
    view = memoryview(buf)
    done = 0
    while done < length:
        n = os.preadv(src, [view[: min(len(buf), length - done)]], offset + done)
        if n == 0:
            raise _shrank()
        hasher.update(view[:n])
        done += n


def _copy_while_hashing(
    src: int, dst: int, offset: int, length: int, hasher: hashlib._Hash
) -> None:
    """Kernel-copy in a helper thread while this thread hashes the same source bytes.

    Both ``copy_file_range`` and ``hashlib`` release the GIL, so the two run in parallel
    and memory stays at one 8 MiB buffer.
    """
    errors: list[BaseException] = []

    def copy() -> None:
        try:
            copy_span(src, dst, offset, length, None)
        except BaseException as exc:  # re-raised in the calling thread
            errors.append(exc)

    worker = threading.Thread(target=copy, name="dicomveil-copy", daemon=True)
    worker.start()
    try:
        _hash_range(src, offset, length, hasher)
    finally:
        worker.join()
    if errors:
        raise errors[0]


def copy_span(src: int, dst: int, offset: int, length: int, hasher: hashlib._Hash | None) -> None:
    """Copy `length` bytes at `offset` of `src` to the current position of `dst`.

    Spans shorter than :data:`KERNEL_COPY_ABOVE` pass once through a 1 MiB buffer (hashed
    on the way when asked). Longer ones are copied by the kernel (``copy_file_range``,
    then ``sendfile``, then the buffer where neither works), and hashed in parallel.

    Raises
    ------
    MalformedInputError
        The source ended before `length` bytes (it shrank since it was read).
    """
    if length < KERNEL_COPY_ABOVE:
        _buffered_copy(src, dst, offset, length, hasher)
        return
    if hasher is not None:
        _copy_while_hashing(src, dst, offset, length, hasher)
        return
    done = _kernel_copy(src, dst, offset, length)
    if done < length:
        _buffered_copy(src, dst, offset + done, length - done, None)
