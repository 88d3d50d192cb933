"""De-identify many files on every core: discovery, worker pool, outcomes, run summary.

The same function serves the ``deid`` command and every later entry point. Workers are
processes that each compile the policy and derive the keys once, then take files in chunks (to
amortise the cost of handing work over). Pseudonyms come from the key alone, so the output does
not depend on the number of workers or the order files are processed in.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.rules import CompiledPolicy, compile_policy
from dicomveil.pipeline.files import FileOutcome, deidentify_file
from dicomveil.profile.policy import Policy

__all__ = ["RunSummary", "default_workers", "discover", "run_deidentification"]

CHUNK_SIZE = 16


def default_workers() -> int:
    """Return the number of cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def discover(source: Path) -> Iterator[Path]:
    """Yield the candidate files under ``source`` (or ``source`` itself), sorted.

    Hidden files and folders (names starting with ``.``) are passed over; whether a file is
    DICOM is decided by its content when it is read, not by its name.
    """
    if source.is_file():
        yield source
        return
    for root, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


@dataclass(slots=True)
class RunSummary:
    """The outcome of one run (PHI-free but for the source paths, which stay on this side)."""

    run_id: str
    total: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    bytes_written: int = 0
    operations: Counter[str] = field(default_factory=Counter)
    flags: Counter[str] = field(default_factory=Counter)
    failures: list[FileOutcome] = field(default_factory=list)
    skips: list[FileOutcome] = field(default_factory=list)

    def add(self, outcome: FileOutcome) -> None:
        """Count one file's outcome."""
        self.total += 1
        if outcome.status == "ok":
            self.ok += 1
            self.bytes_written += outcome.size
            self.operations.update(outcome.operations)
            self.flags.update(outcome.flags)
        elif outcome.status == "skipped":
            self.skipped += 1
            self.skips.append(outcome)
        else:
            self.failed += 1
            self.failures.append(outcome)


# -- worker side ------------------------------------------------------------------------------

_STATE: dict[str, Any] = {}


def _init_worker(secret: bytes, policy: Policy, dest: str, fsync: bool, hash_output: bool) -> None:
    _STATE["keys"] = PseudonymKeys(secret)
    _STATE["compiled"] = compile_policy(policy)
    _STATE["dest"] = Path(dest)
    _STATE["fsync"] = fsync
    _STATE["hash_output"] = hash_output


def _process_chunk(paths: Sequence[str]) -> list[FileOutcome]:
    compiled: CompiledPolicy = _STATE["compiled"]
    keys: PseudonymKeys = _STATE["keys"]
    dest: Path = _STATE["dest"]
    options = {"fsync": _STATE["fsync"], "hash_output": _STATE["hash_output"]}
    return [deidentify_file(Path(p), dest, compiled, keys, **options) for p in paths]


def _chunks(paths: Iterable[Path], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for path in paths:
        chunk.append(str(path))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# -- parent side ------------------------------------------------------------------------------


def run_deidentification(
    paths: Iterable[Path],
    dest: Path,
    policy: Policy,
    secret: bytes,
    *,
    workers: int | None = None,
    fsync: bool = False,
    hash_output: bool = False,
    on_outcome: Callable[[FileOutcome], None] | None = None,
    run_id: str | None = None,
) -> RunSummary:
    """De-identify every file of ``paths`` into ``dest``.

    Parameters
    ----------
    paths:
        Input files (see :func:`discover`).
    dest:
        The destination folder; receives only de-identified files.
    policy, secret:
        The policy and the pseudonym secret.
    workers:
        Processes to use (default: every core); ``1`` runs in this process.
    hash_output:
        Compute each output's SHA-256 (batches need it; ``deid`` does not by default).
    on_outcome:
        Called in this process for each file, as it finishes (progress, vault, audit).
    """
    summary = RunSummary(run_id=run_id or uuid.uuid4().hex)
    dest.mkdir(parents=True, exist_ok=True)
    workers = workers or default_workers()

    def handle(outcomes: list[FileOutcome]) -> None:
        for outcome in outcomes:
            summary.add(outcome)
            if on_outcome is not None:
                on_outcome(outcome)

    if workers == 1:
        _init_worker(secret, policy, str(dest), fsync, hash_output)
        for chunk in _chunks(paths, 1):
            handle(_process_chunk(chunk))
        return summary

    with ProcessPoolExecutor(
        max_workers=workers,
        initializer=_init_worker,
        initargs=(secret, policy, str(dest), fsync, hash_output),
    ) as pool:
        pending: set[Future[list[FileOutcome]]] = set()
        for chunk in _chunks(paths, CHUNK_SIZE):
            pending.add(pool.submit(_process_chunk, chunk))
            if len(pending) >= workers * 4:  # bounded: discovery never runs far ahead
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    handle(future.result())
        for future in pending:
            handle(future.result())
    return summary
