"""Audit retention: sealing the oldest entries away without breaking the chain.

:func:`seal_older_than` moves every entry written before a cut-off (a prefix of the log) into
a *segment* file, ``<export>/audit-<first seq>-<last seq>.jsonl``, byte for byte, and rewrites
the log with the entries kept. An authenticated checkpoint (``audit.checkpoint``) records the
``seq`` and the hash of the last entry moved out: :meth:`~dicomveil.audit.log.AuditLog.verify`
starts the chain from it, so

- what is kept still verifies (its first entry chains to the checkpoint's hash);
- removing kept entries from the start, or forging the checkpoint, is still caught (the
  checkpoint carries a MAC under the audit key);
- a segment verifies on its own with :func:`verify_segment` (its entries carry their MACs,
  its first entry chains to the previous segment's last).

The caller appends an ``audit.seal`` entry recording the segment (name, entries, SHA-256):
the kept log keeps a record of what was sealed. Segments are meant to be moved off the
machine (WORM storage, the archive of the security officer); the export folder defaults to
``audit/sealed`` beside the log.

Order on disk: segment (fsync), checkpoint, log replaced, all under the log's lock. A crash
after the checkpoint and before the log is replaced leaves the full log, which still verifies
from the genesis (its first entry is ``seq`` 1); the next seal does the work again.

An SQL audit backend seals the same way: the rows before the cut-off are exported, deleted,
and the checkpoint row carries the last removed hash (``docs/security.md``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dicomveil.audit._files import write_file
from dicomveil.audit.entry import GENESIS, AuditEntry, VerifyResult, sha256
from dicomveil.audit.log import AuditLog
from dicomveil.errors import AuditError

__all__ = ["AUDIT_SEAL", "Sealed", "count_older_than", "seal_older_than", "verify_segment"]

AUDIT_SEAL = "audit.seal"


@dataclass(frozen=True, slots=True)
class Sealed:
    """A segment sealed away (or, in a dry run, that would be): value-free."""

    entries: int
    first_seq: int = 0
    last_seq: int = 0
    segment: str = ""
    """The segment's file name (in the export folder)."""
    sha256: str = ""
    last_hash: str = ""
    """The hash of the last entry sealed (what the checkpoint carries)."""


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _old_prefix(lines: list[bytes], cutoff: str) -> int:
    """How many leading complete lines were written before ``cutoff`` (ISO text, UTC)."""
    count = 0
    for line in lines:
        if not line.endswith(b"\n"):
            break
        try:
            entry = AuditEntry.parse(line[:-1])
        except ValueError:
            raise AuditError(
                "an audit entry is unreadable; run `dicomveil audit verify` before sealing"
            ) from None
        if entry.time >= cutoff:
            break
        count += 1
    return count


def _read_all(fd: int) -> list[bytes]:
    size = os.fstat(fd).st_size
    data = os.pread(fd, size, 0)
    return data.splitlines(keepends=True)


def count_older_than(log: AuditLog, cutoff: datetime) -> int:
    """How many entries :func:`seal_older_than` would seal (the dry run)."""
    stamp = _iso(cutoff)
    count = 0
    for entry in log.entries():
        if entry.time >= stamp:
            break
        count += 1
    return count


def seal_older_than(log: AuditLog, cutoff: datetime, export: Path) -> Sealed:
    """Seal the entries written before ``cutoff`` (UTC) into a segment under ``export``.

    The log must verify first (sealing a tampered log would hide the tampering).

    Raises
    ------
    AuditError
        The log does not verify, or cannot be read or written.
    """
    if type(log) is not AuditLog:
        raise AuditError(
            f"sealing is built for the file audit log, not {type(log).__name__}: not sealed"
        )
    checked = log.verify()
    if not checked.ok:
        raise AuditError(
            f"the audit log does not verify (entry {checked.first_bad_seq}): not sealed"
        )
    fd = log.lock()
    try:
        lines = _read_all(fd)
        count = _old_prefix(lines, _iso(cutoff))
        if count == 0:
            return Sealed(0)
        old, kept = lines[:count], lines[count:]
        first = AuditEntry.parse(old[0][:-1]).seq
        last = AuditEntry.parse(old[-1][:-1]).seq
        last_hash = sha256(old[-1][:-1])
        body = b"".join(old)
        name = f"audit-{first:012d}-{last:012d}.jsonl"
        export.mkdir(parents=True, exist_ok=True, mode=0o700)
        if (export / name).exists():
            raise AuditError(f"the segment {name} exists already in the export folder")
        write_file(export / name, body)
        details = {"segment": name, "entries": count, "first_seq": first}
        log.write_checkpoint(last, last_hash, details)
        write_file(log.path.with_name(log.path.name + ".sealing"), b"".join(kept))
        os.replace(log.path.with_name(log.path.name + ".sealing"), log.path)
        return Sealed(count, first, last, name, sha256(body), last_hash)
    except OSError as exc:
        raise AuditError(f"cannot seal the audit log ({exc.strerror})") from None
    finally:
        os.close(fd)


def _segment_lines(path: Path) -> Iterator[bytes]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AuditError(f"cannot read the segment {path.name} ({exc.strerror})") from None
    for raw in data.splitlines(keepends=True):
        yield raw[:-1] if raw.endswith(b"\n") else raw


def verify_segment(log: AuditLog, path: Path, prev: str = "") -> VerifyResult:
    """Check a sealed segment: every MAC, ``seq`` and ``prev`` inside it, under ``log``'s key.

    ``prev``: the hash its first entry must chain to (the previous segment's last, or the
    genesis for the first segment); empty: not checked.
    """
    expected, line_no = 0, 0
    for line_no, line in enumerate(_segment_lines(path), start=1):
        try:
            entry = AuditEntry.parse(line)
        except ValueError:
            return VerifyResult(False, line_no - 1, expected, line_no, "not a valid entry")
        if line_no == 1:
            expected = entry.seq
            if not prev and entry.seq == 1:
                prev = GENESIS
        bad = log.check_line(line, expected, prev or entry.prev)
        if bad is not None:
            return VerifyResult(False, line_no - 1, expected, line_no, bad)
        prev, expected = sha256(line), expected + 1
    return VerifyResult(True, line_no)
