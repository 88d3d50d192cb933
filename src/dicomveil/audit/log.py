"""The tamper-evident audit log: one JSON object per line, hash-chained and authenticated.

Each line (``$DICOMVEIL_HOME/audit/audit.jsonl``) is one entry::

    {"seq": 7, "time": "2025-01-31T10:00:00.000000Z", "event": "reid.lookup",
     "actor": "alice", "outcome": "success", "details": {...}, "key_id": "1a2b3c4d5e6f",
     "prev": "<sha256 of line 6>", "mac": "<HMAC-SHA256 of this entry without mac>"}

``seq`` counts from 1, ``prev`` is the SHA-256 of the previous line's bytes (64 zeros for the
first), and ``mac`` authenticates the entry (canonical JSON, sorted keys, without ``mac``)
under a key derived from the ``audit`` secret. Editing, deleting, inserting or reordering
lines therefore breaks a MAC, a ``seq`` or a ``prev`` at the first affected entry, which
:meth:`AuditLog.verify` names. Removing entries from the *end* is caught by a small
authenticated head file (``audit.head``: last ``seq`` and its hash), rewritten by every
append.

Writers append under an exclusive ``fcntl.flock`` on the log file, read the last entry
under that lock to chain to it, write with ``O_APPEND`` and ``fsync`` before unlocking, so
entries from several processes never interleave or get lost. The new head is written to
``audit.head.tmp`` and ``fsync``'d on another thread *while* the log is ``fsync``'d (the two
flushes overlap instead of following each other), and renamed onto ``audit.head`` only once
the log's ``fsync`` has returned: the head on disk never names an entry the log on disk may
not hold, so a power loss cannot make ``verify`` report a truncation that did not happen
(it may leave the head one append behind, which ``verify`` accepts, as before).

A crash in the middle of a write leaves a *torn* last line (no newline). ``verify`` reports
it (earlier entries still verify). The next append repairs the log: it moves the torn bytes
to ``audit/torn/<time>-<sha256 prefix>.partial``, truncates the log back to its last complete
line, and appends an ``audit.repair`` entry recording the size and SHA-256 of what was set
aside before the entries it was asked to write. The incomplete entry was never acknowledged
to its writer, so nothing that was reported as logged is lost.

The head file only anchors the end against an attacker without the audit key who
truncates the log but keeps the head; whoever can rewrite both files together can still
cut off the newest entries. Export the log regularly (syslog/ATNA) to a system the
attacker cannot reach to anchor it outside this machine.

Retention (:mod:`dicomveil.audit.seal`) moves the oldest entries into a sealed segment file
and leaves an authenticated checkpoint (``audit.checkpoint``: the ``seq`` and hash of the last
entry moved out); :meth:`AuditLog.verify` then starts the chain from the checkpoint, so what
is kept still verifies, and removing kept entries from the start is still caught.

No PHI goes into entries: callers pass pseudonyms, opaque ids, counts, hashes and keywords
(see :mod:`dicomveil.audit.events`).

With ``DICOMVEIL_AUDIT_SYSLOG`` set, every entry written is also forwarded live to a syslog
collector (RFC 5424 over TCP or TLS; see :mod:`dicomveil.audit.syslog`), which anchors the
chain outside this machine as it grows.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dicomveil.audit._files import (
    line_start,
    lines_backwards,
    stage_file,
    write_all,
    write_file,
)
from dicomveil.audit.entry import GENESIS, AuditEntry, AuditEvent, VerifyResult, canonical, sha256
from dicomveil.audit.events import AUDIT_REPAIR
from dicomveil.audit.syslog import SyslogForwarder, forwarder_from_env
from dicomveil.errors import AuditError
from dicomveil.home import shared_database_url, state_home
from dicomveil.keystore import key_id, load_key
from dicomveil.ports import Clock
from dicomveil.threads import ProcessThreads

__all__ = ["AuditLog"]

LOG_FILE = "audit.jsonl"
HEAD_FILE = "audit.head"
CHECKPOINT_FILE = "audit.checkpoint"
_BAD_HEAD = (-1, "")
_head_writers = ProcessThreads("dicomveil-audit", 2)
"""The threads writing and flushing new head files while appending threads flush the log
(one pool per process: a pool inherited through ``fork`` has no threads left)."""


def _stage_beside(path: Path, data: bytes) -> Future[Path] | None:
    """Start :func:`stage_file` on a head-writer thread; ``None`` once the interpreter is
    shutting down (no new threads then: the caller stages the head itself, after the log)."""
    try:
        return _head_writers.get().submit(stage_file, path, data)
    except RuntimeError:
        return None


def _derive(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def _beside(origin: str, home: Path) -> bool:
    """Whether a key loaded from ``origin`` is a file under the state folder ``home``."""
    if not origin.startswith("file "):
        return False
    try:
        return Path(origin[5:]).resolve().is_relative_to(home.resolve())
    except OSError:
        return True


def _starts_chain(line: bytes) -> bool:
    """Whether ``line`` claims to be the first entry ever written (a log not sealed yet:
    its MAC and chain are then checked from the genesis as usual)."""
    try:
        return AuditEntry.parse(line).seq == 1
    except ValueError:
        return False


class _SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class AuditLog:
    """An append-only, hash-chained, HMAC-authenticated audit log in ``directory``.

    Parameters
    ----------
    directory:
        The audit folder (``$DICOMVEIL_HOME/audit``); created with mode 0700.
    secret:
        The audit secret (see :mod:`dicomveil.keystore`).
    clock:
        Source of entry times (UTC).
    forwarder:
        Where entries are forwarded live besides the file (``None``: nowhere).
    """

    def __init__(
        self,
        directory: Path,
        secret: bytes,
        *,
        clock: Clock | None = None,
        forwarder: SyslogForwarder | None = None,
    ) -> None:
        if not secret:
            raise ValueError("the audit secret is empty")
        self.directory = Path(directory)
        self.path = self.directory / LOG_FILE
        self.head_path = self.directory / HEAD_FILE
        self.key_id = key_id(secret)
        self._mac_key = _derive(secret, b"dicomveil audit mac v1")
        self._fingerprint_key = _derive(secret, b"dicomveil audit fingerprint v1")
        self._clock: Clock = clock or _SystemClock()
        self.forwarder = forwarder
        self.key_beside_log = False
        """Whether the key is a clear file in the folder holding the log (see :meth:`open`)."""

    @classmethod
    def open(
        cls,
        home: Path | None = None,
        *,
        key_file: Path | None = None,
        environ: Mapping[str, str] | None = None,
        create: bool = True,
        notice: Callable[[str], None] | None = None,
        database_url: str | None = None,
    ) -> AuditLog:
        """Open the audit log under ``$DICOMVEIL_HOME/audit`` with the audit key; in the
        shared database ``database_url`` (else ``$DICOMVEIL_DATABASE_URL``) when one is set
        (:class:`dicomveil.audit.sql.SqlAuditLog`: one chain for every host).

        The audit key is created on first use (with ``notice``) unless ``create`` is false.
        Entries are forwarded to the syslog collector ``DICOMVEIL_AUDIT_SYSLOG`` names.

        Raises
        ------
        ConfigError
            No audit key (``create`` false) or an unreadable one; a bad syslog target.
        """
        env = dict(os.environ if environ is None else environ)
        folder = cls.location(home, environ=env)
        key = load_key(
            "audit", key_file=key_file, environ=env, home=home, create=create, notice=notice
        )
        shared = shared_database_url(database_url, env)
        log: AuditLog
        if shared:
            from dicomveil.audit.sql import SqlAuditLog

            forwarder = forwarder_from_env(env)
            log = SqlAuditLog.connect(shared, folder, key.secret, forwarder=forwarder)
        else:
            log = cls(folder, key.secret, forwarder=forwarder_from_env(env))
        log.key_beside_log = not key.kms_key_id and _beside(key.origin, folder.parent)
        return log

    @staticmethod
    def location(home: Path | None = None, *, environ: Mapping[str, str] | None = None) -> Path:
        """The audit folder: ``$DICOMVEIL_HOME/audit`` (or ``home/audit``)."""
        env = dict(os.environ if environ is None else environ)
        return (home if home is not None else state_home(env)) / "audit"

    def written(self) -> bool:
        """Whether any entry was ever written (in the log or recorded by its head)."""
        return self.written_in(self.directory)

    def close(self) -> None:
        """Release what the log holds open (nothing for the file log)."""

    def ready(self) -> bool:
        """Whether the log can be written (``/readyz``): its folder exists or is still to
        be made."""
        return self.directory.is_dir() or not self.path.exists()

    def newest_lines(self) -> Iterator[bytes]:
        """The entries' lines, newest first (the console's page costs what it shows); not
        authenticated here (:meth:`verify` checks the chain)."""
        return lines_backwards(self.path)

    @staticmethod
    def written_in(directory: Path) -> bool:
        """Whether an audit log was ever written in ``directory`` (log or head file exists)."""
        return (directory / LOG_FILE).exists() or (directory / HEAD_FILE).exists()

    def fingerprint(self, value: str) -> str:
        """Return a keyed fingerprint of ``value`` (to record a value that might be PHI).

        Equal values give equal fingerprints under the same audit key; without the key the
        value cannot be confirmed by guessing.
        """
        digest = hmac.new(self._fingerprint_key, value.encode("utf-8"), hashlib.sha256)
        return "hmac-sha256:" + digest.hexdigest()[:32]

    # -- writing -----------------------------------------------------------------------------

    def append(self, event: AuditEvent) -> AuditEntry:
        """Append one event; return the entry written (after it is on disk)."""
        return self.append_many([event])[-1]

    def append_many(self, events: Iterable[AuditEvent]) -> list[AuditEntry]:
        """Append several events atomically with respect to other writers (one ``fsync``).

        Raises
        ------
        AuditError
            The log cannot be written, or its last entry is unreadable.
        """
        todo = list(events)
        if not todo:
            return []
        fd = self.lock()
        try:
            repair = self._repair_torn_tail(fd)
            if repair is not None:
                todo.insert(0, repair)
            seq, prev = self._last(fd)
            written: list[AuditEntry] = []
            lines: list[bytes] = []
            for event in todo:
                line = self._encode(seq + 1, event, prev)
                entry = AuditEntry.parse(line)
                seq, prev = entry.seq, entry.hash
                written.append(entry)
                lines.append(line + b"\n")
            write_all(fd, b"".join(lines))
            data = self._head_bytes(seq, prev)
            head = _stage_beside(self.head_path, data)
            try:
                os.fsync(fd)
            finally:
                staged = None if head is None else head.result()  # durable too
            if staged is None:  # no thread to do it beside: in turn
                staged = stage_file(self.head_path, data)
            os.replace(staged, self.head_path)  # only now: the log holds what it names
            if self.forwarder is not None:
                self.forwarder.send(written)
            return written
        except OSError as exc:
            raise AuditError(f"cannot write the audit log {self.path} ({exc.strerror})") from None
        finally:
            os.close(fd)  # also releases the lock

    def lock(self) -> int:
        """Open the log and lock it exclusively; return the descriptor (closing unlocks).

        Sealing replaces the log file: a writer that waited for the lock on the replaced file
        opens the new one and waits again.

        Raises
        ------
        AuditError
            The log cannot be opened.
        """
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            while True:
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    current = os.stat(self.path).st_ino
                except FileNotFoundError:
                    current = -1
                if current == os.fstat(fd).st_ino:
                    return fd
                os.close(fd)
        except OSError as exc:
            raise AuditError(f"cannot open the audit log {self.path} ({exc.strerror})") from None

    def _encode(self, seq: int, event: AuditEvent, prev: str) -> bytes:
        moment = self._clock.now().astimezone(UTC)
        body: dict[str, Any] = {
            "seq": seq,
            "time": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "event": event.event,
            "actor": event.actor,
            "outcome": event.outcome,
            "details": dict(event.details),
            "key_id": self.key_id,
            "prev": prev,
        }
        body["mac"] = self._mac(body)
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def _mac(self, body: Mapping[str, Any]) -> str:
        return hmac.new(self._mac_key, canonical(body), hashlib.sha256).hexdigest()

    def _last(self, fd: int) -> tuple[int, str]:
        """Return ``(seq, hash)`` of the last complete entry (``(0, GENESIS)`` when empty)."""
        size = os.fstat(fd).st_size
        if size == 0:
            checkpoint = self.read_checkpoint()
            return (0, GENESIS) if checkpoint in (None, _BAD_HEAD) else checkpoint
        start = line_start(fd, size - 1)
        line = os.pread(fd, size - 1 - start, start)
        try:
            return AuditEntry.parse(line).seq, sha256(line)
        except ValueError:
            raise AuditError(
                "the last audit entry is unreadable; run `dicomveil audit verify`"
            ) from None

    def _repair_torn_tail(self, fd: int) -> AuditEvent | None:
        """Set a torn last line aside and truncate it away; return the event recording it."""
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return None
        start = line_start(fd, size)
        fragment = os.pread(fd, size - start, start)
        digest = sha256(fragment)
        torn = self.directory / "torn"
        torn.mkdir(exist_ok=True, mode=0o700)
        stamp = self._clock.now().astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"{stamp}-{digest[:12]}.partial"
        write_file(torn / name, fragment)
        os.ftruncate(fd, start)
        os.fsync(fd)
        details = {"torn_bytes": len(fragment), "torn_sha256": digest, "set_aside_as": name}
        return AuditEvent(AUDIT_REPAIR, "dicomveil", "success", details)

    def _head_mac(self, seq: int, digest: str) -> str:
        return self._mac({"head_seq": seq, "head_hash": digest, "key_id": self.key_id})

    def _checkpoint_mac(self, seq: int, digest: str) -> str:
        return self._mac({"checkpoint_seq": seq, "checkpoint_hash": digest, "key_id": self.key_id})

    def write_checkpoint(self, seq: int, digest: str, details: Mapping[str, Any]) -> None:
        """Record that the entries up to ``seq`` (the last one hashing to ``digest``) were
        sealed away: the kept log starts after it (see :mod:`dicomveil.audit.seal`)."""
        body = {"seq": seq, "hash": digest, "key_id": self.key_id, **details}
        body["mac"] = self._checkpoint_mac(seq, digest)
        write_file(self.directory / CHECKPOINT_FILE, canonical(body) + b"\n", replace=True)

    def read_checkpoint(self) -> tuple[int, str] | None:
        """The authenticated checkpoint ``(seq, hash)``; ``None`` when there is none, and
        ``(-1, "")`` when it is damaged or not authenticated by this key."""
        try:
            body = json.loads((self.directory / CHECKPOINT_FILE).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return _BAD_HEAD
        seq, digest = body.get("seq"), body.get("hash")
        if not isinstance(seq, int) or not isinstance(digest, str):
            return _BAD_HEAD
        if not hmac.compare_digest(self._checkpoint_mac(seq, digest), str(body.get("mac"))):
            return _BAD_HEAD
        return seq, digest

    def _head_bytes(self, seq: int, digest: str) -> bytes:
        head = {"seq": seq, "hash": digest, "key_id": self.key_id}
        head["mac"] = self._head_mac(seq, digest)
        return canonical(head) + b"\n"

    # -- reading -----------------------------------------------------------------------------

    def entries(self) -> Iterator[AuditEntry]:
        """Yield every complete entry in order (a torn last line is skipped).

        Raises
        ------
        AuditError
            A line is not an audit entry (run :meth:`verify` to see why).
        """
        for number, line in self._lines():
            if line is None:
                return
            try:
                yield AuditEntry.parse(line)
            except ValueError:
                raise AuditError(f"line {number} of the audit log is not an audit entry") from None

    def _lines(self) -> Generator[tuple[int, bytes | None], None, None]:
        """Yield ``(line number, line without newline)``; ``None`` for a torn last line."""
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise AuditError(f"cannot read the audit log {self.path} ({exc.strerror})") from None
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
            for number, raw in enumerate(handle, start=1):
                yield number, raw[:-1] if raw.endswith(b"\n") else None

    def verify(self) -> VerifyResult:
        """Check the whole chain; name the first entry that does not verify."""
        head = self._read_head()
        expected, prev, line_no, head_hash = 1, GENESIS, 0, None
        checkpoint = self.read_checkpoint()
        if checkpoint == _BAD_HEAD:
            reason = "the checkpoint file is damaged or not authenticated by this audit key"
            return VerifyResult(False, 0, 1, 1, reason)
        if checkpoint is not None:
            expected, prev = checkpoint[0] + 1, checkpoint[1]
            if head is not None and head[0] == checkpoint[0]:
                head_hash = checkpoint[1]
        sealed = expected - 1  # entries sealed away before the first kept one
        with closing(self._lines()) as lines:
            for line_no, line in lines:
                if line_no == 1 and line is not None and _starts_chain(line):
                    expected, prev, sealed = 1, GENESIS, 0
                if line is None:
                    reason = "torn last line: the entry is incomplete (crash while writing?)"
                    return VerifyResult(False, expected - 1, expected, line_no, reason)
                problem = self._check(line, expected, prev)
                if problem is not None:
                    return VerifyResult(False, expected - 1, expected, line_no, problem)
                prev = sha256(line)
                if head is not None and expected == head[0]:
                    head_hash = prev
                expected += 1
        last = expected - 1
        tail: tuple[int, str] | None = None
        if head == _BAD_HEAD:
            tail = last, "the head file is damaged or not authenticated by this audit key"
        elif head is not None and head[0] > last:
            tail = (
                last + 1,
                f"missing: entries up to {head[0]} were written (removed from the end)",
            )
        elif head is not None and head_hash != head[1]:
            tail = head[0], "differs from the entry recorded in the head file"
        if tail is not None:
            seq, reason = tail
            return VerifyResult(False, min(last, seq - 1), seq, min(seq, line_no + 1), reason)
        return VerifyResult(True, last - sealed)

    def check_line(self, line: bytes, expected: int, prev: str) -> str | None:
        """Why ``line`` is not entry ``expected`` chained to ``prev`` (``None``: it is)."""
        return self._check(line, expected, prev)

    def _check(self, line: bytes, expected: int, prev: str) -> str | None:
        try:
            entry = AuditEntry.parse(line)
        except ValueError:
            return "not a valid audit entry (edited, inserted or damaged)"
        if entry.key_id != self.key_id:
            return f"authenticated by audit key {entry.key_id}, not {self.key_id}"
        if not hmac.compare_digest(self._mac(entry.body()), entry.mac):
            return "MAC does not verify: the entry was edited or forged"
        if entry.seq > expected:
            return f"missing: found entry {entry.seq} in its place (deleted or reordered)"
        if entry.seq < expected:
            return f"found entry {entry.seq} again in its place (inserted, duplicated or reordered)"
        if entry.prev != prev:
            return "does not chain to the entry before it (an earlier entry was replaced)"
        return None

    def _read_head(self) -> tuple[int, str] | None:
        try:
            head = json.loads(self.head_path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return _BAD_HEAD
        seq, digest = head.get("seq"), head.get("hash")
        valid = isinstance(seq, int) and isinstance(digest, str)
        if not valid or not hmac.compare_digest(self._head_mac(seq, digest), str(head.get("mac"))):
            return _BAD_HEAD
        return seq, digest
