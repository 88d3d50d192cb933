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

import multiprocessing
import os
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dicomveil.pipeline.duplicates import DuplicateGuard
from dicomveil.pipeline.orphans import die_with_parent

if TYPE_CHECKING:
    from dicomveil.pipeline.outcome import FileOutcome
    from dicomveil.profile.policy import Policy

__all__ = ["RunSummary", "chunk_size", "default_workers", "run_deidentification"]

MAX_CHUNK = 64
"""Most files handed to a worker at once (fewer hand-overs; still balanced at the end)."""


def default_workers() -> int:
    """Return the number of cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


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
    """

    run_id: str
    total: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    duplicates: int = 0
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
        elif outcome.status == "duplicate":
            self.duplicates += 1
        else:
            self.failed += 1
            self.failures.append(outcome)


# -- worker side ------------------------------------------------------------------------------

_STATE: dict[str, Any] = {}


#: Optional packages pydicom probes when imported, for decoding pixel data (numpy and the
#: codec plugins, found through package metadata) or downloading test files (requests).
_PIXEL_PACKAGES = (
    "numpy", "PIL", "pylibjpeg", "openjpeg", "libjpeg", "rle", "gdcm", "jpeg_ls", "pyjpegls",
    "requests", "tqdm",
)  # fmt: skip


def _import_pydicom_without_codecs() -> None:
    """Import pydicom in a worker process without probing its pixel codecs.

    Workers de-identify headers and copy pixel data as bytes: they never decode pixels, and
    probing numpy and the codec plugins is more than half of pydicom's import time (0.2 s of
    0.4 s per process here). Packages already imported are used as usual, and the others
    stay importable afterwards; only pydicom, in this process, considers them missing.
    """
    if "pydicom" in sys.modules:
        return
    hidden = [name for name in _PIXEL_PACKAGES if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment] # ``import name`` fails
    try:
        import pydicom.dataset  # noqa: F401 - imported for its side effect
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]


def _init_pool_worker(
    secret: bytes, policy: Policy, dest: str, fsync: bool, hash_output: bool, parent: int
) -> None:
    die_with_parent(parent)
    if "clean-pixel-data" not in {o.value for o in policy.options}:  # it decodes pixels
        _import_pydicom_without_codecs()
    _init_worker(secret, policy, dest, fsync, hash_output)


def _init_worker(secret: bytes, policy: Policy, dest: str, fsync: bool, hash_output: bool) -> None:
    from dicomveil.engine.keys import PseudonymKeys
    from dicomveil.engine.rules import compile_policy
    from dicomveil.pipeline.files import deidentify_file

    _STATE["keys"] = PseudonymKeys(secret)
    _STATE["compiled"] = compile_policy(policy)
    _STATE["dest"] = Path(dest)
    _STATE["options"] = {"fsync": fsync, "hash_output": hash_output}
    _STATE["run"] = deidentify_file


def _ready() -> None:
    """A no-op task: handing it out starts the workers."""


def _process_chunk(paths: Sequence[str]) -> list[FileOutcome]:
    run = _STATE["run"]
    compiled, keys, dest, options = (
        _STATE["compiled"],
        _STATE["keys"],
        _STATE["dest"],
        _STATE["options"],
    )
    return [run(Path(p), dest, compiled, keys, **options) for p in paths]


def _chunks(paths: Iterable[Path], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for path in paths:
        chunk.append(str(path))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _context() -> Any:
    """Fork where available: workers start in milliseconds and share what is imported.

    Not from a process running other threads (a server running a batch beside its requests):
    a thread may hold a lock at the moment of the fork, and the child would wait for it
    forever. Workers then come from a ``forkserver`` (a clean process that forks them).
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else None)


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

    if in_process:
        if before is not None:
            before()
        _init_worker(secret, policy, str(dest), fsync, hash_output)
        for chunk in _chunks(paths, 1):
            handle(_process_chunk(chunk))
        return summary

    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=_context(),
        initializer=_init_pool_worker,
        initargs=(secret, policy, str(dest), fsync, hash_output, os.getpid()),
    ) as pool:
        pool.submit(_ready)  # forks the workers now: they get ready while ``before`` runs
        if before is not None:
            before()
        # Outcomes are handled in input order (those of a chunk finished early wait for the
        # chunks before it), so which of two inputs sharing an output comes first does not
        # depend on the workers' timing.
        in_order = _InOrder(handle)
        pending: set[Future[list[FileOutcome]]] = set()
        # A list is handed out at once, so workers never wait for this process (busy
        # recording, or in an fsync); a generator is followed a few chunks ahead.
        ahead = None if files is not None else workers * 4
        for chunk in _chunks(paths, chunk_size(files, workers)):
            pending.add(in_order.track(pool.submit(_process_chunk, chunk)))
            if ahead is not None and len(pending) >= ahead:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                in_order.done(done)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            in_order.done(done)
    return summary


class _InOrder:
    """Hands the results of futures to ``handle`` in the order the futures were tracked."""

    def __init__(self, handle: Callable[[list[FileOutcome]], None]) -> None:
        self._handle = handle
        self._number: dict[Future[list[FileOutcome]], int] = {}
        self._ready: dict[int, list[FileOutcome]] = {}
        self._next = self._tracked = 0

    def track(self, future: Future[list[FileOutcome]]) -> Future[list[FileOutcome]]:
        """Note ``future`` as the next in order; return it."""
        self._number[future] = self._tracked
        self._tracked += 1
        return future

    def done(self, futures: Iterable[Future[list[FileOutcome]]]) -> None:
        """Take the results of finished ``futures``; handle those whose turn has come."""
        for future in futures:
            self._ready[self._number.pop(future)] = future.result()
        while self._next in self._ready:
            outcomes = self._ready.pop(self._next)
            self._next += 1
            self._handle(outcomes)


def _restorer(
    secret: bytes, policy: Policy, dest: Path, fsync: bool, hash_output: bool
) -> Callable[[Path], None]:
    """Return what writes one input's output again, in this process (rarely needed: the
    engine is set up on first use)."""
    state: dict[str, Any] = {}

    def restore(source: Path) -> None:
        if not state:
            from dicomveil.engine.keys import PseudonymKeys
            from dicomveil.engine.rules import compile_policy
            from dicomveil.pipeline.files import deidentify_file

            state.update(
                keys=PseudonymKeys(secret), compiled=compile_policy(policy), run=deidentify_file
            )
        state["run"](
            source, dest, state["compiled"], state["keys"], fsync=fsync, hash_output=hash_output
        )

    return restore
