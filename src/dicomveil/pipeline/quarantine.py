"""Quarantine: where inputs that could not be made safe are kept, with their reasons.

A quarantine folder lives under ``$DICOMVEIL_HOME/quarantine/RUN_ID`` (never in a destination:
it holds originals). It receives a copy of each failed DICOM input and ``reasons.json``
listing every failed input with its source path, its SHA-256 and a PHI-free reason.

- **Names come from content**: a copy is called ``<sha256>.dcm``; no part of the input's
  name is used (an input name may be a patient's, or too long for the quarantine's file
  system), and the same content is kept once.
- **Only DICOM is kept**: an input that is not DICOM at all (a report, a video, a
  configuration file that happened to be in the folder) is listed by hash and reason only,
  never copied.
- **Only regular files are read**, opened without following a link or waiting for a
  FIFO's writer, and copied up to the size they had when opened.
- **A quota** bounds the quarantine (bytes and files, counted over the whole quarantine
  folder): an input that would exceed it is listed but not copied.
- **A retention period**: :func:`sweep_quarantine` removes runs older than it (``deid``
  does at the start of each run; ``dicomveil quarantine purge`` on demand).
- **The organisation** (tenant) whose inputs a run holds, when it has one, is recorded in
  ``run.json`` beside ``reasons.json`` (``{"organisation": "CODE"}``): the console shows an
  organisation's session its own runs only, and a release de-identifies them under that
  organisation's prefix and key. A run without the file (older runs, runs of no
  organisation) belongs to none.

Reports that travel (``--json``, batch summaries) name failed inputs by the SHA-256 of their
content only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from dicomveil.pipeline.outcome import FileOutcome
from dicomveil.pipeline.sources import open_regular

__all__ = [
    "DEFAULT_LIMITS",
    "REASONS_NAME",
    "RUN_NAME",
    "UNREADABLE",
    "QuarantineLimits",
    "QuarantineResult",
    "QuarantineRun",
    "input_sha256",
    "list_quarantine",
    "quarantine_failures",
    "quarantine_run",
    "read_reasons",
    "remove_runs",
    "run_organisation",
    "sweep_quarantine",
    "would_copy",
]

REASONS_NAME: Final = "reasons.json"
RUN_NAME: Final = "run.json"
"""The run's own record beside its reasons: ``{"organisation": CODE}`` (absent: none)."""
UNREADABLE: Final = "?"
"""The organisation of a run whose ``run.json`` is unreadable (never a valid code)."""
_CHUNK: Final = 1 << 20
_RUN_NAME: Final = re.compile(r"[0-9A-Za-z_-]{8,64}")
"""What a quarantine run's folder is called (a run id or a batch id): nothing else is swept."""
_DAY: Final = 86400.0


@dataclass(frozen=True, slots=True)
class QuarantineLimits:
    """The quota and the retention period of a quarantine.

    Attributes
    ----------
    max_bytes, max_files:
        The most the whole quarantine folder may hold; ``0`` copies nothing.
    retention_days:
        Runs older than this are removed by :func:`sweep_quarantine`; ``0`` keeps them.
    """

    max_bytes: int = 10 * 1024**3
    max_files: int = 10_000
    retention_days: float = 30.0


DEFAULT_LIMITS: Final = QuarantineLimits()


@dataclass(slots=True)
class QuarantineResult:
    """What one run put into its quarantine folder."""

    copied: int = 0
    bytes: int = 0
    not_copied: dict[str, int] = field(default_factory=dict)
    """Inputs listed without a copy, by PHI-free reason (not DICOM, quota reached, ...)."""


def quarantine_failures(
    failures: Sequence[FileOutcome],
    folder: Path,
    *,
    limits: QuarantineLimits = DEFAULT_LIMITS,
    root: Path | None = None,
    organisation: str | None = None,
) -> int:
    """Quarantine ``failures`` (see :func:`quarantine_run`); return how many were copied."""
    result = quarantine_run(failures, folder, limits=limits, root=root, organisation=organisation)
    return result.copied


def quarantine_run(
    failures: Sequence[FileOutcome],
    folder: Path,
    *,
    limits: QuarantineLimits = DEFAULT_LIMITS,
    root: Path | None = None,
    not_read: Sequence[tuple[Path, str]] = (),
    organisation: str | None = None,
) -> QuarantineResult:
    """Copy each failed DICOM input into ``folder`` and write ``reasons.json``.

    The folder is created with mode 0700. Quarantining the same list again rewrites the same
    files. Inputs that cannot be read, that are not DICOM, or that would exceed the quota are
    listed in ``reasons.json`` without a copy (``"file": ""`` and ``"not_copied"`` says why).

    Parameters
    ----------
    failures
        The outcomes of the failed inputs (``source`` and ``reason`` are used).
    folder
        The quarantine folder of the run.
    limits
        The quota (counted over ``root``, files already there included).
    root
        The whole quarantine (default: ``folder`` alone).
    not_read
        Paths under SOURCE that were not read at all (``(path, reason)``): listed, never
        opened.
    organisation
        The organisation (tenant code) the inputs were sent for, recorded in ``run.json``
        (written before ``reasons.json``, which makes the folder a run); ``None``: none.

    Raises
    ------
    OSError
        The folder or ``reasons.json`` cannot be written.
    """
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_run(folder, organisation)
    used_bytes, used_files = _usage(root or folder, skip=folder)
    result = QuarantineResult()
    entries: list[dict[str, Any]] = []
    for outcome in failures:
        entry: dict[str, Any] = {
            "file": "",
            "source": str(outcome.source),
            "sha256": "",
            "size": 0,
            "reason": outcome.reason,
        }
        why = _copy(outcome.source, folder, entry, limits, used_bytes, used_files)
        if why:
            entry["not_copied"] = why
            result.not_copied[why] = result.not_copied.get(why, 0) + 1
        elif entry["file"]:
            result.copied += 1
            if entry.pop("new", False):
                used_bytes += entry["size"]
                used_files += 1
                result.bytes += entry["size"]
        entry.pop("new", None)
        entries.append(entry)
    for path, reason in not_read:
        entries.append(
            {"file": "", "source": str(path), "sha256": "", "size": 0, "reason": reason}
            | {"not_copied": "not read"}
        )
    _replace(folder / REASONS_NAME, entries)
    return result


def _replace(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (a temporary file, then a rename)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(temporary, path)


def _write_run(folder: Path, organisation: str | None) -> None:
    """Record the run's organisation (``None``: none, and no ``run.json``)."""
    if organisation:
        _replace(folder / RUN_NAME, {"organisation": organisation})
    else:
        (folder / RUN_NAME).unlink(missing_ok=True)


def run_organisation(folder: Path) -> str | None:
    """The organisation (tenant code) a quarantined run belongs to; ``None``: none (no
    ``run.json``: a run of no organisation, or one quarantined before it was recorded).

    A ``run.json`` that cannot be read or holds no valid code names no organisation the
    console could scope by, so it is reported as :data:`UNREADABLE`: only a session bound
    to no organisation sees such a run, and a release refuses it.
    """
    from dicomveil.tenants import CODE_PATTERN

    path = folder / RUN_NAME
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return UNREADABLE
    code = data.get("organisation") if isinstance(data, dict) else None
    if code is None:
        return None
    if not isinstance(code, str) or not CODE_PATTERN.fullmatch(code):
        return UNREADABLE
    return code


def _copy(
    source: Path,
    folder: Path,
    entry: dict[str, Any],
    limits: QuarantineLimits,
    used_bytes: int,
    used_files: int,
) -> str:
    """Copy one input into ``folder`` under its hash, filling ``entry``; return why not."""
    try:
        fd = open_regular(source)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    try:
        size = os.fstat(fd).st_size
        entry["size"] = size
        if not _looks_like_dicom(fd):
            entry["sha256"] = _digest(fd, size)
            return "not DICOM (listed by hash only)"
        if used_files + 1 > limits.max_files or used_bytes + size > limits.max_bytes:
            entry["sha256"] = _digest(fd, size)
            return "quarantine quota reached"
        temporary = folder / f".copy-{os.getpid()}.tmp"
        digest = hashlib.sha256()
        out = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            for chunk in _chunks(fd, size):
                digest.update(chunk)
                os.write(out, chunk)
        finally:
            os.close(out)
        entry["sha256"] = digest.hexdigest()
        target = folder / f"{entry['sha256']}.dcm"
        entry["new"] = not target.exists()
        os.replace(temporary, target)
        entry["file"] = target.name
        return ""
    except OSError as exc:
        return f"cannot be copied ({exc.strerror or type(exc).__name__})"
    finally:
        os.close(fd)


def would_copy(source: Path) -> str:
    """Return why ``source`` would not be copied into a quarantine (``""``: it would be),
    quota aside (``deid --dry-run``)."""
    try:
        fd = open_regular(source)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    try:
        return "" if _looks_like_dicom(fd) else "not DICOM (listed by hash only)"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    finally:
        os.close(fd)


def _looks_like_dicom(fd: int) -> bool:
    """Tell whether a file starts as DICOM does (the reader's own test, on its first bytes)."""
    from dicomveil.dicomio._detect import layout  # imports pydicom: only once a run failed

    return layout(os.pread(fd, 512, 0)) is not None


def _chunks(fd: int, size: int) -> Iterator[bytes]:
    """Yield the first ``size`` bytes of ``fd`` (never more: a file that grows is cut)."""
    offset = 0
    while offset < size:
        chunk = os.pread(fd, min(_CHUNK, size - offset), offset)
        if not chunk:
            return
        offset += len(chunk)
        yield chunk


def _digest(fd: int, size: int) -> str:
    digest = hashlib.sha256()
    for chunk in _chunks(fd, size):
        digest.update(chunk)
    return digest.hexdigest()


def _usage(root: Path, skip: Path | None = None) -> tuple[int, int]:
    """Return the bytes and files held under ``root`` (copies only, ``skip`` excluded:
    a run quarantined again rewrites its own copies)."""
    total = files = 0
    if not root.is_dir():
        return 0, 0
    for folder, _dirs, names in os.walk(root):
        if skip is not None and Path(folder) == skip:
            continue
        for name in names:
            if name.endswith(".dcm"):
                try:
                    total += os.lstat(os.path.join(folder, name)).st_size
                except OSError:
                    continue
                files += 1
    return total, files


def input_sha256(path: Path) -> str:
    """Return the SHA-256 (hex) of a file's content, or ``""`` when it cannot be read.

    This is how reports name a failed input without its path (which may hold a name). Only
    a regular file is read (see :func:`~dicomveil.pipeline.sources.open_regular`).
    """
    try:
        fd = open_regular(path)
    except OSError:
        return ""
    try:
        return _digest(fd, os.fstat(fd).st_size)
    except OSError:
        return ""
    finally:
        os.close(fd)


# -- the quarantine as a whole (list, show, sweep) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class QuarantineRun:
    """One run's quarantine folder, as ``dicomveil quarantine list`` shows it (PHI-free)."""

    run_id: str
    created: float
    """When its ``reasons.json`` was written (seconds since the epoch)."""
    inputs: int
    copies: int
    bytes: int
    organisation: str | None = None
    """Whose inputs (tenant code, :func:`run_organisation`); ``None``: no organisation."""


def _is_run(folder: Path) -> bool:
    return (
        _RUN_NAME.fullmatch(folder.name) is not None
        and folder.is_dir()
        and not folder.is_symlink()
        and (folder / REASONS_NAME).is_file()
    )


def read_reasons(folder: Path) -> list[dict[str, Any]]:
    """Return the entries of a run's ``reasons.json`` (``[]`` when missing or unreadable)."""
    try:
        data = json.loads((folder / REASONS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [entry for entry in data if isinstance(entry, dict)] if isinstance(data, list) else []


def list_quarantine(root: Path) -> list[QuarantineRun]:
    """Return the runs in the quarantine ``root``, oldest first."""
    runs: list[QuarantineRun] = []
    if not root.is_dir():
        return runs
    for folder in root.iterdir():
        if not _is_run(folder):
            continue
        size, copies = _usage(folder)
        runs.append(
            QuarantineRun(
                run_id=folder.name,
                created=(folder / REASONS_NAME).stat().st_mtime,
                inputs=len(read_reasons(folder)),
                copies=copies,
                bytes=size,
                organisation=run_organisation(folder),
            )
        )
    return sorted(runs, key=lambda run: (run.created, run.run_id))


def sweep_quarantine(root: Path, older_than_days: float, *, now: float | None = None) -> list[str]:
    """Remove the runs of the quarantine ``root`` older than ``older_than_days``.

    Only folders that are quarantine runs (a run or batch id as name, holding
    ``reasons.json``) are removed; anything else under ``root`` is left alone (``0``
    removes every run). Returns the ids of the removed runs.
    """
    limit = (time.time() if now is None else now) - older_than_days * _DAY
    return remove_runs(root, [run.run_id for run in list_quarantine(root) if run.created < limit])


def remove_runs(root: Path, run_ids: Sequence[str]) -> list[str]:
    """Remove the runs ``run_ids`` of the quarantine ``root``; return those removed (a name
    that is not a run of ``root``, a path or ``..`` say, is left alone)."""
    runs = {run.run_id for run in list_quarantine(root)}
    removed = [run_id for run_id in run_ids if run_id in runs]
    for run_id in removed:
        shutil.rmtree(root / run_id, ignore_errors=True)
    return removed
