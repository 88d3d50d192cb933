"""De-identify many files on every core: discovery, worker pool, outcomes, run summary.

The same function serves the ``deid`` command and every later entry point. Workers are
processes that each compile the policy and derive the keys once, then take files in chunks (to
amortise the cost of handing work over). Pseudonyms come from the key alone, so the output does
not depend on the number of workers or the order files are processed in.

Start-up is kept off the critical path: this module imports neither the engine nor pydicom, so
a parent that does not need them forks its workers first; they import the engine while the
parent does its own preparation (``before``: opening the vault, for ``deid``), and only then
are files handed out.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dicomveil.pipeline.duplicates import DuplicateGuard
from dicomveil.pipeline.executor import Executor, WorkerSetup, WorkerState, default_workers

if TYPE_CHECKING:
    from dicomveil.pipeline.outcome import FileOutcome
    from dicomveil.profile.policy import Policy

__all__ = ["RunSummary", "chunk_size", "default_workers", "run_deidentification"]

MAX_CHUNK = 64
"""Most files handed to a worker at once (fewer hand-overs; still balanced at the end)."""


def chunk_size(files: int | None, workers: int) -> int:
    """Return how many files to hand a worker at once: about eight chunks per worker, so
    the last ones keep every worker busy, and at most :data:`MAX_CHUNK`."""
    if files is None:
        return 16
    return max(1, min(MAX_CHUNK, files // (workers * 8)))


@dataclass(slots=True)
class RunSummary:
    """The outcome of one run (PHI-free but for the source paths, which stay on this side).

    ``ok + failed + skipped + duplicates == total``: every input is counted once.
    ``fallbacks`` counts the inputs the byte-level fast path handed to the reference path,
    ``fast_path_errors`` those of them it raised on (a fast-path bug shows as a number).
    """

    run_id: str
    total: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    duplicates: int = 0
    bytes_written: int = 0
    fallbacks: int = 0
    fast_path_errors: int = 0
    operations: Counter[str] = field(default_factory=Counter)
    flags: Counter[str] = field(default_factory=Counter)
    failures: list[FileOutcome] = field(default_factory=list)
    skips: list[FileOutcome] = field(default_factory=list)

    def add(self, outcome: FileOutcome) -> None:
        """Count one file's outcome."""
        self.total += 1
        if outcome.fallback:
            self.fallbacks += 1
            self.fast_path_errors += outcome.fallback == "error"
        if outcome.status == "ok":
            self.ok += 1
            self.bytes_written += outcome.size
            self.operations.update(outcome.operations)
            self.flags.update(outcome.flags)
        elif outcome.status == "skipped":
            self.skipped += 1
            self.skips.append(outcome)
        elif outcome.status == "duplicate":
            self.duplicates += 1
        else:
            self.failed += 1
            self.failures.append(outcome)


# -- worker side ------------------------------------------------------------------------------


def _ready(_state: WorkerState) -> None:
    """A no-op task: handing it out starts the workers."""


def _process_chunk(state: WorkerState, paths: Sequence[str], first: int = 0) -> list[FileOutcome]:
    """De-identify ``paths`` (inputs number ``first`` on), showing in this worker's slot
    the number of the file in hand (so that the parent knows which file a crash was on)."""
    from dicomveil.pipeline.files import deidentify_file

    assert state.dest is not None
    outcomes = []
    for number, path in enumerate(paths, start=first):
        state.working_on(number)
        outcomes.append(
            deidentify_file(
                Path(path),
                state.dest,
                state.compiled,
                state.keys,
                fsync=state.fsync,
                hash_output=state.hash_output,
            )
        )
    state.working_on(-1)
    return outcomes


def _chunks(paths: Iterable[Path | str], size: int) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(number of the first, paths)`` chunks of at most ``size`` paths."""
    chunk: list[str] = []
    first = 0
    for number, path in enumerate(paths):
        if not chunk:
            first = number
        chunk.append(str(path))
        if len(chunk) >= size:
            yield first, chunk
            chunk = []
    if chunk:
        yield first, chunk


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
    before: Callable[[], None] | None = None,
) -> RunSummary:
    """De-identify every file of ``paths`` into ``dest``.

    Parameters
    ----------
    paths:
        Input files (see :func:`dicomveil.pipeline.sources.discover`).
    dest:
        The destination folder; receives only de-identified files.
    policy, secret:
        The policy and the pseudonym secret.
    workers:
        Processes to use (default: every core; never more than files); ``1`` runs in this
        process.
    hash_output:
        Compute each output's SHA-256 (batches need it; ``deid`` does not by default).
    on_outcome:
        Called in this process for each file, as it finishes (progress, vault, audit).
    before:
        Called once the workers are starting and before any file is processed (open what
        records the run here: it runs while the workers get ready). If it raises, nothing
        is processed.
    """
    summary = RunSummary(run_id=run_id or uuid.uuid4().hex)
    dest.mkdir(parents=True, exist_ok=True)
    workers = workers or default_workers()
    files = len(paths) if isinstance(paths, Sequence) else None
    in_process = workers == 1
    if files is not None:  # even one file goes to a worker: it starts while ``before`` runs
        workers = max(1, min(workers, files))

    guard = DuplicateGuard(_restorer(secret, policy, dest, fsync, hash_output))

    def handle(outcomes: list[FileOutcome]) -> None:
        for outcome in outcomes:
            outcome = guard.check(outcome)
            summary.add(outcome)
            if on_outcome is not None:
                on_outcome(outcome)

    in_order = _InOrder(handle)
    setup = WorkerSetup(secret, policy, dest=str(dest), fsync=fsync, hash_output=hash_output)
    if in_process:
        if before is not None:
            before()
        with Executor(setup, 1) as executor:
            for first, chunk in _chunks(paths, 1):
                in_order.add(first, executor.submit(_process_chunk, chunk, first).result())
        return summary

    pool = _Pools(workers, setup)
    # A list is handed out at once, so workers never wait for this process (busy
    # recording, or in an fsync); a generator is followed a few chunks ahead.
    ahead = None if files is not None else workers * 4
    work: Iterator[tuple[int, list[str]]] = _chunks(paths, chunk_size(files, workers))
    while True:  # one pass, and another after a worker died (rarely)
        left, suspects = pool.run(work, in_order, ahead, before)
        before = None
        for number, path in suspects:  # one of them killed its worker: each alone
            in_order.add(number, [pool.alone(number, path)])
        if left is None:
            return summary
        work = left


class _Pools:
    """Runs chunks in a pool of worker processes; survives a worker that dies.

    A worker killed by one file (the kernel's out-of-memory killer, a crash in a native
    library) breaks the pool: every file not finished is then handed out again in a new
    pool, except the ones the workers were on (shown in their slots), which are run one
    at a time, each in a pool of its own: the file that kills its worker again fails alone
    (``WorkerCrash``), the others are de-identified.
    """

    def __init__(self, workers: int, setup: WorkerSetup) -> None:
        self.workers, self.setup = workers, setup

    def _pool(self, workers: int) -> Executor:
        return Executor(self.setup, workers, prefer_fork=True, track=True, isolate=True)

    def run(
        self,
        work: Iterator[tuple[int, list[str]]],
        in_order: _InOrder,
        ahead: int | None,
        before: Callable[[], None] | None,
    ) -> tuple[Iterator[tuple[int, list[str]]] | None, list[tuple[int, str]]]:
        """Run ``work``; return what is left and the suspects if a worker died, else
        ``(None, [])``."""
        pool = self._pool(self.workers)
        chunks: dict[Future[list[FileOutcome]], tuple[int, list[str]]] = {}
        broken = False
        with pool:
            pool.submit(_ready)  # forks the workers now: they get ready while ``before`` runs
            if before is not None:
                before()
            for first, chunk in work:
                try:
                    chunks[pool.submit(_process_chunk, chunk, first)] = (first, chunk)
                except BrokenProcessPool:
                    chunks[Future()] = (first, chunk)  # never run: handed out again
                    broken = True
                    break
                if ahead is not None and len(chunks) >= ahead:
                    broken = self._collect(chunks, in_order, FIRST_COMPLETED)
                    if broken:
                        break
            while chunks and not broken:
                broken = self._collect(chunks, in_order, FIRST_COMPLETED)
        if not broken:
            return None, []
        in_hand = pool.in_hand
        left = [(n, p) for first, c in chunks.values() for n, p in enumerate(c, start=first)]
        left.sort()
        if not in_hand.intersection(n for n, _ in left):  # it died between files: the
            in_hand = {n for n, _ in left[: self.workers]}  # first ones go alone (progress)
        suspects = [(n, p) for n, p in left if n in in_hand]
        again = [(n, p) for n, p in left if n not in in_hand]
        size = max(1, min(MAX_CHUNK, len(again) // (self.workers * 8)))
        redo = ((g[0][0], [p for _, p in g]) for g in _groups(again, size))
        return itertools.chain(redo, work), suspects

    @staticmethod
    def _collect(
        chunks: dict[Future[list[FileOutcome]], tuple[int, list[str]]],
        in_order: _InOrder,
        when: str,
    ) -> bool:
        """Hand over the chunks that are done; return whether the pool broke."""
        done, _ = wait(list(chunks), return_when=when)
        broken = False
        for future in done:
            try:
                outcomes = future.result()
            except BrokenProcessPool:
                broken = True
                continue
            first, _ = chunks.pop(future)
            in_order.add(first, outcomes)
        return broken

    def alone(self, number: int, path: str) -> FileOutcome:
        """De-identify one file in a pool of its own (``WorkerCrash`` if it kills it)."""
        from dicomveil.pipeline.failures import FailureKind
        from dicomveil.pipeline.outcome import FileOutcome

        with self._pool(1) as pool:
            try:
                return pool.submit(_process_chunk, [path], number).result()[0]
            except BrokenProcessPool:
                return FileOutcome(
                    Path(path),
                    "failed",
                    reason=WORKER_CRASH_REASON,
                    error_kind=FailureKind.WORKER_CRASH,
                )


WORKER_CRASH_REASON = "the worker process ended abruptly while de-identifying this file"


def _groups(items: list[tuple[int, str]], size: int) -> Iterator[list[tuple[int, str]]]:
    """Consecutive runs of at most ``size`` items whose numbers follow each other."""
    group: list[tuple[int, str]] = []
    for item in items:
        if group and (len(group) >= size or item[0] != group[-1][0] + 1):
            yield group
            group = []
        group.append(item)
    if group:
        yield group


class _InOrder:
    """Hands outcomes to ``handle`` in input order (those finished early wait for the
    files before them), so which of two inputs sharing an output comes first does not
    depend on the workers' timing."""

    def __init__(self, handle: Callable[[list[FileOutcome]], None]) -> None:
        self._handle = handle
        self._ready: dict[int, FileOutcome] = {}
        self._next = 0

    def add(self, first: int, outcomes: list[FileOutcome]) -> None:
        """Take the outcomes of inputs number ``first`` on; hand over those whose turn came."""
        for number, outcome in enumerate(outcomes, start=first):
            self._ready[number] = outcome
        turn = []
        while self._next in self._ready:
            turn.append(self._ready.pop(self._next))
            self._next += 1
        if turn:
            self._handle(turn)


def _restorer(
    secret: bytes, policy: Policy, dest: Path, fsync: bool, hash_output: bool
) -> Callable[[Path], None]:
    """Return what writes one input's output again, in this process (rarely needed: the
    engine is set up on first use)."""
    executor = Executor(
        WorkerSetup(secret, policy, dest=str(dest), fsync=fsync, hash_output=hash_output), 1
    )

    def restore(source: Path) -> None:
        executor.submit(_process_chunk, [str(source)]).result()

    return restore
