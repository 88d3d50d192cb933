"""Local file-system blob store (the default backend): ``file:///srv/out`` or a plain path.

Layout under the root::

    studies/2.25.1/0001.dcm                         the object itself, byte for byte
    .dicomveil-meta/studies/2.25.1/0001.dcm.json    its content type, metadata and sha256

Names starting with ``.dicomveil-`` are reserved (keys cannot use them), so listings show only
real objects. Every write goes to a temporary file in the target's directory, is flushed with
``fsync`` and renamed over the target with :func:`os.replace`, so readers see the old object or
the new one, never a partial file. The sidecar records the size and modification time of the
content it describes; when they no longer match (a crash between the two renames, a hand
edit), :meth:`~FileBlobStore.head` reports the object without content type, metadata or sha256
rather than stale ones. Files are created with mode 0600.

A store opened with ``sidecars=False`` writes the objects only (one file each, no
``.dicomveil-meta`` folder), for callers that keep their own record of what they stored, such
as the gateway's archive and its study index. Such a store knows of an object only what the
file system does: :meth:`~FileBlobStore.head` and :meth:`~FileBlobStore.list` report key and
size, without content type, metadata or sha256. A put is verified by size, and returns the
sha256 of the content it wrote (the one computed from the payload before writing, as in the
sidecar; no second read), but that digest is not kept anywhere.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import replace
from pathlib import Path
from stat import S_ISREG
from typing import Any

from dicomveil.errors import (
    ConfigError,
    DicomveilError,
    ObjectNotFound,
    StorageError,
    UnsafePathError,
)
from dicomveil.paths import contained_path
from dicomveil.ports import BlobInfo
from dicomveil.storage._base import BaseBlobStore, translating
from dicomveil.storage._keys import RESERVED_PREFIX, is_valid_key
from dicomveil.storage._values import MiB, Payload, info_from_metadata
from dicomveil.storage.url import parse_store_url
from dicomveil.threads import ProcessThreads

__all__ = ["META_DIR", "FileBlobStore", "map_os_errors"]

META_DIR = RESERVED_PREFIX + "meta"
NAME_MAX = 255
"""Longest file name (bytes) the store accepts in a key (the usual file-system limit)."""
_TMP_PREFIX = RESERVED_PREFIX + "tmp-"


def _translate(exc: Exception, what: str) -> DicomveilError | None:
    if isinstance(exc, OSError):
        return StorageError(f"{what}: {exc.strerror or type(exc).__name__}")
    return None


def map_os_errors(what: str) -> AbstractContextManager[None]:
    """Translate :class:`OSError` into :class:`~dicomveil.errors.StorageError` ``from`` it.

    The message keeps the operation and the system's reason (``No space left on device``),
    not the file name.
    """
    return translating(_translate, what)


class FileBlobStore(BaseBlobStore):
    """A :class:`~dicomveil.ports.BlobStore` in a local directory.

    Parameters
    ----------
    root
        The directory holding the objects.
    create
        Create ``root`` (and its parents) when missing; otherwise it must exist.
    fsync
        Flush every write to disk before renaming it into place (turn off only for throwaway
        data, such as tests).
    sidecars
        Record each object's content type, metadata and sha256 in a sidecar file. Without
        them every write is one file, and :meth:`head` knows only the size (see the module
        documentation).

    Raises
    ------
    ConfigError
        When ``root`` is missing and ``create`` is false, or is not a directory.
    """

    scheme = "file"

    def __init__(
        self, root: Path | str, *, create: bool = True, fsync: bool = True, sidecars: bool = True
    ) -> None:
        path = Path(root).expanduser().absolute()
        if create:
            with map_os_errors(f"create {path.as_uri()}"):
                path.mkdir(parents=True, exist_ok=True)
        if not path.is_dir():
            raise ConfigError(f"storage root {path.as_uri()} is not a directory")
        self.url = path.as_uri()
        self._root = path
        self._real_root = path.resolve()
        self._fsync = fsync
        self._sidecars = sidecars
        self._commit_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> FileBlobStore:
        """Open ``file:///path`` (or a plain path); options as for the constructor.

        Raises
        ------
        ConfigError
            For a URL with a host other than ``localhost``, or an unknown option.
        """
        parsed = parse_store_url(url)
        if parsed.scheme != cls.scheme or parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"expected file:///absolute/path or a path, got {url!r}")
        return cls._construct(Path("/" + parsed.path), options=options)

    @property
    def root(self) -> Path:
        """The directory holding the objects."""
        return self._root

    @property
    def sidecars(self) -> bool:
        """Whether content types, metadata and digests are kept in sidecar files."""
        return self._sidecars

    # -- paths --------------------------------------------------------------------------

    def _inside(self, parts: list[str], *, whole: bool = True) -> Path:
        """The path of ``parts`` under the root (:func:`~dicomveil.paths.contained_path`:
        each segment checked, the result resolved inside the root; its last segment too
        unless ``whole`` is false, for a write, which replaces it by a rename)."""
        try:
            return contained_path(self._root, parts, whole=whole, max_segment=NAME_MAX)
        except UnsafePathError as exc:  # the key is not quoted: it may name anything
            raise UnsafePathError(f"invalid key: {exc} (outside the store root)") from None

    def _path(self, key: str) -> Path:
        return self._inside(key.split("/"))

    def _meta_path(self, key: str) -> Path:
        parts = key.split("/")
        parts[-1] += ".json"
        return self._inside([META_DIR, *parts])

    def _write_paths(self, key: str, checked: set[Path]) -> list[Path]:
        """The object's and (when kept) sidecar's paths for a write: their folders must
        resolve inside the root (each folder once per group, in ``checked``); the files
        themselves are replaced by a rename, which does not follow links."""
        parts = key.split("/")
        lists = [parts]
        if self._sidecars:
            lists.append([META_DIR, *parts[:-1], parts[-1] + ".json"])
        paths = []
        for segments in lists:
            path = self._root.joinpath(*segments)
            if path.parent not in checked:
                self._inside(segments, whole=False)
                checked.add(path.parent)
            paths.append(path)
        return paths

    # -- primitives ---------------------------------------------------------------------

    def _write(
        self, key: str, payload: Payload, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        (error,) = self._write_many([(key, payload, content_type, metadata)], consume=False)
        if error is not None:
            raise error

    def _write_many(
        self,
        items: Sequence[tuple[str, Payload, str, Mapping[str, str]]],
        *,
        consume: bool,
    ) -> list[StorageError | None]:
        """Write every object and its sidecar to temporary files, flush them all at once,
        rename them all into place, then flush each folder touched once (not once per
        object)."""
        errors: list[StorageError | None] = []
        pending: list[tuple[int, str, list[tuple[Path, Path]]]] = []
        made: set[Path] = set()
        try:
            for number, (key, payload, content_type, metadata) in enumerate(items):
                try:
                    with map_os_errors(f"put {key!r}"):
                        renames = self._stage(key, payload, content_type, metadata, consume, made)
                except StorageError as exc:
                    errors.append(exc)
                    continue
                errors.append(None)
                pending.append((number, key, renames))
            if self._fsync:
                flushed = _flush_all([[tmp for tmp, _ in renames] for _, _, renames in pending])
                for (number, key, _), error in zip(pending, flushed, strict=True):
                    if error is not None:
                        errors[number] = StorageError(f"put {key!r}: {error}")
            folders: set[Path] = set()
            with self._commit_lock:
                for number, key, renames in pending:
                    if errors[number] is not None:
                        continue
                    try:
                        with map_os_errors(f"put {key!r}"):
                            while renames:  # sidecar first, then the object
                                temporary, final = renames[0]
                                os.replace(temporary, final)
                                folders.add(final.parent)
                                del renames[0]  # in place: nothing left to remove
                    except StorageError as exc:
                        errors[number] = exc
            if self._fsync:
                _flush_all([[folder] for folder in sorted(folders)], directories=True)
        finally:
            for _, _, renames in pending:
                for temporary, _ in renames:
                    temporary.unlink(missing_ok=True)
        return errors

    def _stage(
        self,
        key: str,
        payload: Payload,
        content_type: str,
        metadata: Mapping[str, str],
        consume: bool,
        made: set[Path],
    ) -> list[tuple[Path, Path]]:
        """Write ``key``'s content (and sidecar) beside their places; return the renames due."""
        checked = len(made)
        paths = self._write_paths(key, made)
        if len(made) > checked:  # a folder not seen yet in this group
            for path in paths:
                path.parent.mkdir(parents=True, exist_ok=True)
        target = paths[0]
        if consume and isinstance(payload.source, Path):
            data_tmp, stat = self._adopt(target.parent, payload)
        else:
            data_tmp, stat = self._write_temp(target.parent, payload)
        if not self._sidecars:
            return [(data_tmp, target)]
        sidecar = paths[1]
        try:
            record = {
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
                "content_type": content_type,
                "metadata": dict(metadata),
            }
            encoded = json.dumps(record, sort_keys=True).encode("ascii")
            meta_tmp, _ = self._write_temp(sidecar.parent, Payload.from_bytes(encoded))
        except BaseException:
            data_tmp.unlink(missing_ok=True)
            raise
        return [(meta_tmp, sidecar), (data_tmp, target)]

    def _adopt(self, directory: Path, payload: Payload) -> tuple[Path, os.stat_result]:
        """Move the payload's file to a temporary name in ``directory`` (copy it when it lies
        on another file system); return it and its stat (the caller flushes it)."""
        assert isinstance(payload.source, Path)
        temporary = directory / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
        try:
            os.replace(payload.source, temporary)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            return self._write_temp(directory, payload)
        try:
            os.chmod(temporary, 0o600)
            stat = os.stat(temporary)
            if stat.st_size != payload.size:
                raise StorageError("a file changed while it was being stored")
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return temporary, stat

    def _write_temp(self, directory: Path, payload: Payload) -> tuple[Path, os.stat_result]:
        """Write ``payload`` to a new temporary file in ``directory``; return it and its stat
        (the caller flushes it)."""
        handle, name = tempfile.mkstemp(dir=directory, prefix=_TMP_PREFIX)
        temporary = Path(name)
        try:
            with os.fdopen(handle, "wb") as out, payload.open() as source:
                shutil.copyfileobj(source, out, MiB)
                out.flush()
                stat = os.fstat(out.fileno())
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return temporary, stat

    def _read(self, key: str) -> bytes:
        path = self._path(key)
        with map_os_errors(f"get {key!r}"):
            try:
                return path.read_bytes()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                raise ObjectNotFound(f"{self.url}: no object {key!r}") from None

    def _read_into(self, key: str, path: Path) -> None:
        source = self._path(key)
        with map_os_errors(f"get {key!r}"):
            try:
                shutil.copyfile(source, path)  # copy_file_range/sendfile: nothing in memory
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                if source.is_file():  # the destination failed: the caller's OSError
                    raise
                raise ObjectNotFound(f"{self.url}: no object {key!r}") from None

    def _head(self, key: str) -> BlobInfo | None:
        path = self._path(key)
        with map_os_errors(f"head {key!r}"):
            try:
                stat = path.stat()
            except (FileNotFoundError, NotADirectoryError):
                return None
            if not S_ISREG(stat.st_mode):
                return None
            if not self._sidecars:
                return BlobInfo(key=key, size=stat.st_size)
            record = self._read_sidecar(key)
        if record.get("size") != stat.st_size or record.get("mtime_ns") != stat.st_mtime_ns:
            return BlobInfo(key=key, size=stat.st_size)
        return info_from_metadata(key, stat.st_size, record["content_type"], record["metadata"])

    def _verified(self, key: str, payload: Payload) -> BlobInfo:
        """Without sidecars, check the size read back, and return the digest of the payload
        written (it cannot be read back); with them, as every store does."""
        if self._sidecars:
            return super()._verified(key, payload)
        info = self._head(key)
        if info is None or info.size != payload.size:
            with suppress(StorageError):
                self._delete(key)
            raise StorageError(
                f"{self.url}: upload of {key!r} did not verify (size differs); "
                "the object was deleted"
            )
        return replace(info, sha256=payload.sha256)

    def _read_sidecar(self, key: str) -> dict[str, Any]:
        """Return the sidecar record of ``key``, or ``{}`` when missing or unreadable."""
        try:
            record = json.loads(self._meta_path(key).read_bytes())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return {}
        valid = (
            isinstance(record, dict)
            and isinstance(record.get("content_type"), str)
            and isinstance(record.get("metadata"), dict)
            and all(isinstance(v, str) for v in record["metadata"].values())
        )
        return record if valid else {}

    def _list(self, prefix: str) -> Iterator[BlobInfo]:
        directory, _, _ = prefix.rpartition("/")
        start = self._path(directory) if directory else self._root
        with map_os_errors(f"list {prefix!r}"):
            keys: list[str] = []
            for folder, subfolders, files in os.walk(start):
                relative = Path(folder).relative_to(self._root).as_posix()
                base = "" if relative == "." else relative + "/"
                subfolders[:] = [
                    name
                    for name in subfolders
                    if not name.startswith(RESERVED_PREFIX)
                    and _could_match(base + name + "/", prefix)
                ]
                keys.extend(
                    base + name
                    for name in files
                    if (base + name).startswith(prefix) and is_valid_key(base + name)
                )
            for key in sorted(keys):
                with suppress(ValueError):  # a symbolic link leading out of the root
                    info = self._head(key)
                    if info is not None:
                        yield info

    def _delete(self, key: str) -> None:
        path, sidecar = self._path(key), self._meta_path(key)
        with map_os_errors(f"delete {key!r}"), self._commit_lock:
            if path.is_dir() and not path.is_symlink():
                return
            with suppress(FileNotFoundError, NotADirectoryError):
                path.unlink()
            with suppress(FileNotFoundError, NotADirectoryError):
                sidecar.unlink()


def _could_match(folder: str, prefix: str) -> bool:
    """Return whether keys under ``folder`` (ending in ``/``) can start with ``prefix``."""
    return folder.startswith(prefix) or prefix.startswith(folder)


_FLUSHERS = 16
"""Threads flushing one group's files at once: the file system commits concurrent flushes
together (one journal commit for many files rather than one each)."""
_flushers = ProcessThreads("dicomveil-fsync", _FLUSHERS)
"""The flushing threads (per process: a forked child cannot use its parent's threads)."""


def _fsync_path(path: Path, *, directory: bool = False) -> str | None:
    """Flush ``path`` to disk; return why it failed (``None``: done). A directory that
    cannot be opened or flushed (not every platform allows it) is passed over."""
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError as exc:
        return None if directory else (exc.strerror or type(exc).__name__)
    try:
        os.fsync(handle)
    except OSError as exc:
        return None if directory else (exc.strerror or type(exc).__name__)
    finally:
        os.close(handle)
    return None


def _flush_group(paths: list[Path], directory: bool) -> str | None:
    for path in paths:
        error = _fsync_path(path, directory=directory)
        if error is not None:
            return error
    return None


def _flush_all(groups: list[list[Path]], *, directories: bool = False) -> list[str | None]:
    """Flush every group of paths, the groups concurrently; per group, why it failed."""
    if len(groups) <= 1:
        return [_flush_group(group, directories) for group in groups]
    return list(_flushers.get().map(_flush_group, groups, [directories] * len(groups)))
