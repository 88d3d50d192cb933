"""Reading archived instances at a bounded cost: a local file, read a piece at a time.

WADO-RS used to read a whole instance into memory (twice for frames: the bytes, then the
parsed dataset): a 600 MiB instance cost 1.3 GB per request. Here an archived instance is a
*file*: the object itself in a ``file://`` archive, otherwise a private copy in the server's
staging folder (removed when done). Answers stream it in :data:`CHUNK` pieces, and frames
and bulk data are read from their offsets in it (see :mod:`dicomveil.web.pixels`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from dicomveil.errors import ObjectNotFound
from dicomveil.index import StoredInstance
from dicomveil.storage import FileBlobStore
from dicomveil.web.services import Services

__all__ = ["CHUNK", "archived_file", "file_chunks"]

CHUNK: Final = 1 << 20


@contextlib.contextmanager
def archived_file(services: Services, instance: StoredInstance) -> Iterator[Path]:
    """A local path holding the archived object of ``instance`` while the block runs.

    Raises
    ------
    ObjectNotFound, StorageError
        The object cannot be read.
    """
    store, key = services.store, instance.storage_key
    if isinstance(store, FileBlobStore):
        root = store.root.resolve()
        path = root.joinpath(*key.split("/")).resolve()
        if not path.is_relative_to(root):
            raise ObjectNotFound("the archived object lies outside the archive")
        if not path.is_file():
            raise ObjectNotFound("the archived object is missing")
        yield path
        return
    copy = services.staging / f"read-{secrets.token_hex(8)}"
    try:
        os.close(os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        store.get_file(key, copy)  # streamed into the private file: any size
        yield copy
    finally:
        copy.unlink(missing_ok=True)


def file_chunks(services: Services, instance: StoredInstance) -> Iterator[bytes]:
    """The archived object of ``instance``, :data:`CHUNK` bytes at a time."""
    with archived_file(services, instance) as path, open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk
