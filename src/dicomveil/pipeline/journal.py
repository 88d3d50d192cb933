"""The batch journal: one SQLite database (WAL) per batch, recording each input's state.

Every input moves through::

    discovered ──► deidentified (staged, with size and sha256) ──► uploaded (verified)
        │
        └────────► failed (reason) / skipped (reason)

The journal is written only by the process that runs the batch (under :meth:`Journal.lock`),
in transactions, so a ``kill -9`` at any moment leaves it consistent: whatever it says is
done, is done. What it does not say yet is done again on resume, which is safe because
de-identification is deterministic and uploads are idempotent by key. Other processes may read
it at the same time (WAL), to follow a running batch.

The journal lives in the batch's staging folder under ``$DICOMVEIL_HOME`` and holds source
paths, which may carry names: it never travels with the batch.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicomveil.errors import ConfigError, UnsafePathError
from dicomveil.paths import contained_path

__all__ = [
    "JOURNAL_NAME",
    "LOCK_NAME",
    "STATES",
    "InputRow",
    "Journal",
    "JournalUpdate",
    "batch_locked",
    "is_locked",
]

JOURNAL_NAME = "journal.sqlite"
LOCK_NAME = "lock"
#: Every state an input can be in, in the order of the pipeline.
STATES = ("discovered", "deidentified", "uploaded", "failed", "skipped")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inputs (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL DEFAULT 'discovered',
    staged TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL DEFAULT '',
    study_id TEXT NOT NULL DEFAULT '',
    modality TEXT NOT NULL DEFAULT '',
    size INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    error_kind TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS inputs_state ON inputs (state);
CREATE INDEX IF NOT EXISTS inputs_path ON inputs (path);
"""

_COLUMNS = "id, source, state, staged, path, study_id, modality, size, sha256, reason, error_kind"


@dataclass(frozen=True, slots=True)
class InputRow:
    """One input as the journal knows it.

    Attributes
    ----------
    staged
        Where the de-identified file is, relative to the staging folder's ``staged/``.
    path
        Where it goes, relative to the batch root: ``STUDY/SERIES/INSTANCE.dcm``.
    """

    id: int
    source: Path
    state: str
    staged: str = ""
    path: str = ""
    study_id: str = ""
    modality: str = ""
    size: int = 0
    sha256: str = ""
    reason: str = ""
    error_kind: str = ""


@dataclass(frozen=True, slots=True)
class JournalUpdate:
    """A new state for one input (the fields that come with it, others left empty)."""

    id: int
    state: str
    staged: str = ""
    path: str = ""
    study_id: str = ""
    modality: str = ""
    size: int = 0
    sha256: str = ""
    reason: str = ""
    error_kind: str = ""


class Journal:
    """The journal of one batch (see the module docstring).

    Use :meth:`create` or :meth:`open`; close it with :meth:`close` or a ``with`` block.
    """

    def __init__(self, connection: sqlite3.Connection, folder: Path) -> None:
        self._db = connection
        self.folder = folder

    # -- life cycle ---------------------------------------------------------------------

    @classmethod
    def create(cls, folder: Path, meta: Mapping[str, str]) -> Journal:
        """Create the journal of a new batch in ``folder`` with its ``meta`` values.

        Raises
        ------
        ConfigError
            When ``folder`` already holds a journal.
        """
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        if (folder / JOURNAL_NAME).exists():
            raise ConfigError(f"batch folder {folder} already holds a journal")
        journal = cls(_connect(folder / JOURNAL_NAME), folder)
        journal._db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
        journal.set_meta(dict(meta))
        return journal

    @classmethod
    def open(cls, folder: Path) -> Journal:
        """Open the journal in ``folder``.

        Raises
        ------
        ConfigError
            When there is no journal there.
        """
        path = folder / JOURNAL_NAME
        if not path.is_file():
            raise ConfigError(f"no batch journal in {folder}")
        journal = cls(_connect(path), folder)
        if not journal.meta().get("batch_id"):
            journal.close()
            raise ConfigError(f"the batch journal in {folder} is incomplete (never started)")
        return journal

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- batch values -------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        """Return the batch's values (id, priority, destination, state...)."""
        try:
            rows = self._db.execute("SELECT name, value FROM meta").fetchall()
        except sqlite3.OperationalError:  # created but the schema never committed
            return {}
        return {str(name): str(value) for name, value in rows}

    def set_meta(self, values: Mapping[str, str]) -> None:
        """Set batch values, in one transaction."""
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO meta (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                list(values.items()),
            )

    # -- inputs -------------------------------------------------------------------------

    def add_inputs(self, sources: Iterable[Path]) -> int:
        """Record the discovered inputs and mark discovery done, in one transaction."""
        with self._transaction() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO inputs (source) VALUES (?)", ((str(s),) for s in sources)
            )
            added = db.total_changes - before
            db.execute(
                "INSERT INTO meta (name, value) VALUES ('discovered', '1') "
                "ON CONFLICT (name) DO UPDATE SET value = '1'"
            )
        return added

    def rows(self, state: str | None = None) -> list[InputRow]:
        """Return the inputs (in ``state``, or all), in discovery order."""
        where, args = ("WHERE state = ?", (state,)) if state else ("", ())
        query = f"SELECT {_COLUMNS} FROM inputs {where} ORDER BY id"
        return [_row(values) for values in self._db.execute(query, args)]

    def counts(self) -> dict[str, int]:
        """Return how many inputs are in each state (every state present)."""
        found = dict(self._db.execute("SELECT state, count(*) FROM inputs GROUP BY state"))
        return {state: int(found.get(state, 0)) for state in STATES}

    def apply(self, updates: Sequence[JournalUpdate]) -> None:
        """Record new states for inputs, in one transaction."""
        if not updates:
            return
        with self._transaction() as db:
            db.executemany(
                "UPDATE inputs SET state = ?, staged = ?, path = ?, study_id = ?, modality = ?, "
                "size = ?, sha256 = ?, reason = ?, error_kind = ? WHERE id = ?",
                [
                    (
                        u.state,
                        u.staged,
                        u.path,
                        u.study_id,
                        u.modality,
                        u.size,
                        u.sha256,
                        u.reason,
                        u.error_kind,
                        u.id,
                    )
                    for u in updates
                ],
            )

    def mark_uploaded(self, uploads: Sequence[tuple[Sequence[int], str, int, str]]) -> None:
        """Record verified uploads, in one transaction.

        Each entry is ``(ids, path, size, sha256)``: the inputs ``ids`` are uploaded, and every
        uploaded input of ``path`` takes the stored object's size and digest (the last upload
        of an object is what the store holds).
        """
        if not uploads:
            return
        with self._transaction() as db:
            for ids, path, size, sha256 in uploads:
                marks = ",".join("?" * len(ids))
                db.execute(
                    "UPDATE inputs SET state = 'uploaded', size = ?, sha256 = ? "
                    f"WHERE id IN ({marks}) OR (path = ? AND state = 'uploaded')",
                    (size, sha256, *ids, path),
                )

    def reset_missing(self, staged_root: Path) -> int:
        """Send staged inputs whose file has gone back to ``discovered``; return how many."""
        lost = [
            row.id for row in self.rows("deidentified") if not _staged_file(staged_root, row.staged)
        ]
        self.apply([JournalUpdate(id=row_id, state="discovered") for row_id in lost])
        return len(lost)


@contextmanager
def batch_locked(folder: Path) -> Iterator[bool]:
    """Hold the batch's lock for the block; yield whether it was obtained.

    The lock is an advisory ``flock`` on ``folder/lock`` (``folder`` must exist): released by
    the kernel when the holder dies, so a batch killed with ``kill -9`` is free to resume at
    once.
    """
    handle = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(handle)


def is_locked(folder: Path) -> bool:
    """Tell whether a process holds the batch's lock right now (the batch is running)."""
    path = folder / LOCK_NAME
    if not path.exists():
        return False
    with batch_locked(folder) as obtained:
        return not obtained


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    connection.execute("PRAGMA journal_mode = WAL")
    # WAL + NORMAL survives a killed process; only a power loss may lose the last commits,
    # which the resume then redoes (idempotently).
    connection.execute("PRAGMA synchronous = NORMAL")
    os.chmod(path, 0o600)
    return connection


def _row(values: tuple[Any, ...]) -> InputRow:
    (row_id, source, state, staged, path, study, modality, size, sha, reason, kind) = values
    return InputRow(
        id=int(row_id),
        source=Path(source),
        state=str(state),
        staged=str(staged),
        path=str(path),
        study_id=str(study),
        modality=str(modality),
        size=int(size),
        sha256=str(sha),
        reason=str(reason),
        error_kind=str(kind),
    )


def _staged_file(staged_root: Path, staged: str) -> bool:
    """Whether the staged output ``staged`` is a file under ``staged_root`` (a key that would
    lead out of it is not: the input is then de-identified again)."""
    try:
        return contained_path(staged_root, staged).is_file()
    except UnsafePathError:
        return False
