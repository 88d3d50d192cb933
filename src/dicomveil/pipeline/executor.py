"""The one executor: worker processes that de-identify, for ``deid``, batches and every server.

Every pool of worker processes dicomveil starts is an :class:`Executor`, and every worker
starts the same way, in :func:`init_worker`:

- it dies with its parent (a ``kill -9`` of the parent leaves no worker behind);
- pydicom is quiet: its warnings and log messages quote attribute values (PHI), and a worker
  forked from a ``forkserver`` inherits none of its parent's settings, so it sets them itself;
- pydicom is imported without probing its pixel codecs when the policy never decodes pixels
  (half of its import time);
- the pseudonym keys are derived, the policy compiled, the archive opened once.

Tasks are plain module-level functions called as ``task(state, *args)`` with the worker's
:class:`WorkerState`: in a worker process that is the state :func:`init_worker` built; with
``processes=1`` (:attr:`Executor.in_process`) the task runs in the calling thread with a state
of its own, so several executors can live in one process (a server running a batch beside
its requests) without sharing globals.

Crash isolation: a worker that dies breaks the pool (:class:`BrokenProcessPool` from
:meth:`Executor.submit` or a future); :meth:`Executor.restart` starts a new one (once for all
callers). With ``track=True`` each worker shows, in a shared slot, the number of the item in
its hands, so a caller knows which item a crash was on (:attr:`Executor.in_hand`).

Where worker processes cannot start (no semaphores, a sandbox), :meth:`Executor.open` falls
back to working in the calling process, with a value-free warning.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from dicomveil.pipeline.orphans import die_with_parent

if TYPE_CHECKING:  # the parent of ``deid`` imports neither the engine nor pydicom
    from dicomveil.engine.keys import PseudonymKeys
    from dicomveil.engine.rules import CompiledPolicy
    from dicomveil.pipeline.tenancy import TenantEngines
    from dicomveil.profile.policy import Policy
    from dicomveil.storage import BaseBlobStore
    from dicomveil.tenants import TenantKey

__all__ = [
    "Executor",
    "WorkerSetup",
    "WorkerState",
    "default_workers",
    "init_worker",
    "silence_pydicom_log",
]

T = TypeVar("T")

PRELOAD: Final = ["dicomveil.pipeline.ingest_work"]
"""What the ``forkserver`` imports once, so that workers forked from it start in
milliseconds (the engine, pydicom, the storage backends)."""

log = logging.getLogger(__name__)

#: Optional packages pydicom probes when imported, for decoding pixel data (numpy and the
#: codec plugins, found through package metadata) or downloading test files (requests).
_PIXEL_PACKAGES = (
    "numpy", "PIL", "pylibjpeg", "openjpeg", "libjpeg", "rle", "gdcm", "jpeg_ls", "pyjpegls",
    "requests", "tqdm",
)  # fmt: skip


def default_workers() -> int:
    """Return the number of cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    """What every worker starts from (picklable: it travels to each worker once).

    Attributes
    ----------
    secret, policy:
        The pseudonym secret and the policy (keys derived and policy compiled once).
    store_url, store_options:
        The archive each worker opens (``None``: the workers do not store).
    dest:
        A destination folder for de-identified files (``deid`` and batches).
    fsync, hash_output:
        How files are written into ``dest``.
    tenants:
        Each organisation's pseudonym prefix and own key (see :mod:`dicomveil.tenants`).
    """

    secret: bytes = field(repr=False)
    policy: Policy
    store_url: str | None = None
    store_options: Mapping[str, Any] = field(default_factory=dict)
    dest: str | None = None
    fsync: bool = False
    hash_output: bool = False
    tenants: Mapping[str, TenantKey] = field(default_factory=dict, repr=False)

    @property
    def decodes_pixels(self) -> bool:
        """Whether the policy decodes pixel data (then pydicom needs its codecs)."""
        return "clean-pixel-data" in {o.value for o in self.policy.options}


@dataclass(slots=True)
class WorkerState:
    """A worker's ready state: what :func:`init_worker` (or an in-process executor) built."""

    keys: PseudonymKeys
    compiled: CompiledPolicy
    store: BaseBlobStore | None = None
    dest: Path | None = None
    fsync: bool = False
    hash_output: bool = False
    slots: Any = None
    slot: int = 0
    tenants: TenantEngines = field(default_factory=dict)

    def working_on(self, number: int) -> None:
        """Show the item in hand (``-1``: none) to the parent, for crash isolation."""
        if self.slots is not None:
            self.slots[self.slot] = number


def _ready_state(setup: WorkerSetup) -> WorkerState:
    from dicomveil.engine.keys import PseudonymKeys
    from dicomveil.engine.rules import compile_policy

    store = None
    if setup.store_url is not None:
        from dicomveil.storage import open_store

        store = open_store(setup.store_url, **setup.store_options)
    keys = PseudonymKeys(setup.secret)
    tenants = {}
    if setup.tenants:
        from dicomveil.pipeline.tenancy import build_engines

        tenants = build_engines(setup.tenants, keys, setup.policy)
    return WorkerState(
        keys=keys,
        compiled=compile_policy(setup.policy),
        store=store,
        dest=Path(setup.dest) if setup.dest is not None else None,
        fsync=setup.fsync,
        hash_output=setup.hash_output,
        tenants=tenants,
    )


_WORKER: list[WorkerState] = []
"""This worker process's state (one item once :func:`init_worker` ran)."""


def silence_pydicom_log() -> None:
    """Keep pydicom's logger out of the process's log: its messages quote values (an
    invalid Specific Character Set, a bad length), and a root handler would print them.
    Input problems are reported by dicomveil itself, without values."""
    logger = logging.getLogger("pydicom")
    logger.propagate = False
    logger.setLevel(logging.CRITICAL + 1)


def _import_pydicom_without_codecs() -> None:
    """Import pydicom in a worker process without probing its pixel codecs.

    Workers that de-identify headers copy pixel data as bytes: they never decode pixels, and
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


def init_worker(setup: WorkerSetup, parent: int, slots: Any, taken: Any) -> None:
    """Start a worker process (the one initialiser of every pool; see the module's text)."""
    die_with_parent(parent)
    from dicomveil.quiet import quiet_pydicom

    quiet_pydicom()
    silence_pydicom_log()
    if not setup.decodes_pixels:
        _import_pydicom_without_codecs()
    state = _ready_state(setup)
    if slots is not None:
        with taken.get_lock():  # this worker's slot, where it shows the item in hand
            state.slots, state.slot = slots, taken.value
            taken.value += 1
    _WORKER[:] = [state]


def _in_worker(task: Callable[..., T], *args: Any) -> T:
    return task(_WORKER[0], *args)


def _context(prefer_fork: bool) -> Any:
    """Fork where allowed and safe: workers start in milliseconds and share what is imported.

    Not from a process running other threads (a server): a thread may hold a lock at the
    moment of the fork, and the child would wait for it forever. Workers then come from a
    ``forkserver`` (a clean process, with the engine imported, that forks them).
    """
    methods = multiprocessing.get_all_start_methods()
    if prefer_fork and "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        return context
    return multiprocessing.get_context("spawn")  # pragma: no cover - not POSIX


class Executor:
    """A pool of ``processes`` worker processes (``1``: the calling thread) for tasks.

    Parameters
    ----------
    setup:
        What each worker starts from.
    processes:
        Worker processes; ``1`` starts none (:attr:`in_process`) unless ``isolate``.
    prefer_fork:
        Fork from this process when it runs a single thread (a command); a server passes
        ``False`` and its workers come from the ``forkserver``.
    track:
        Give each worker a slot showing the item in its hands (see :attr:`in_hand`).
    isolate:
        Start worker processes even for ``processes=1`` (a task that may kill its process:
        run alone after a crash).
    local:
        The state in-process tasks get (default: built from ``setup`` on first use; a server
        passes its own keys, policy and open archive).
    """

    def __init__(
        self,
        setup: WorkerSetup,
        processes: int,
        *,
        prefer_fork: bool = False,
        track: bool = False,
        isolate: bool = False,
        local: WorkerState | None = None,
    ) -> None:
        self.setup, self.processes = setup, max(1, processes)
        self._prefer_fork, self._track = prefer_fork, track
        self._lock = threading.Lock()
        self._local, self._owns_local = local, local is None
        self._pool: ProcessPoolExecutor | None = None
        self._slots: Any = None
        if self.processes > 1 or isolate:
            self._pool = self._start()

    @classmethod
    def open(
        cls,
        setup: WorkerSetup,
        processes: int,
        *,
        prefer_fork: bool = False,
        track: bool = False,
        local: WorkerState | None = None,
    ) -> Executor:
        """An executor of ``processes`` workers, or in-process when workers cannot start."""
        try:
            return cls(setup, processes, prefer_fork=prefer_fork, track=track, local=local)
        except (OSError, NotImplementedError, ImportError) as exc:  # no semaphores, ...
            log.warning(
                "worker processes unavailable (%s); de-identifying in this process",
                type(exc).__name__,
            )
            return cls(setup, 1, prefer_fork=prefer_fork, track=track, local=local)

    @property
    def in_process(self) -> bool:
        """Whether tasks run in the calling thread (no worker processes)."""
        return self._pool is None

    def _start(self) -> ProcessPoolExecutor:
        context = _context(self._prefer_fork)
        slots = taken = None
        if self._track:
            slots = context.Array("q", [-1] * self.processes, lock=False)
            taken = context.Value("i", 0)
        self._slots = slots
        return ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=context,
            initializer=init_worker,
            initargs=(self.setup, os.getpid(), slots, taken),
        )

    def local_state(self) -> WorkerState:
        """The state in-process tasks get (built on first use)."""
        with self._lock:
            if self._local is None:
                self._local = _ready_state(self.setup)
            return self._local

    def submit(self, task: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``task(state, *args)`` in a worker (in this thread when :attr:`in_process`).

        Raises
        ------
        BrokenProcessPool
            A worker died: :meth:`restart` before handing out more work.
        """
        pool = self._pool
        if pool is not None:
            return pool.submit(_in_worker, task, *args)
        future: Future[T] = Future()
        try:
            future.set_result(task(self.local_state(), *args))
        except BaseException as exc:  # noqa: BLE001 - handed over like a worker's error
            future.set_exception(exc)
        return future

    @property
    def pool(self) -> ProcessPoolExecutor | None:
        """The current process pool (``None``: in process)."""
        return self._pool

    @property
    def in_hand(self) -> set[int]:
        """The items the workers were on (after a crash; only with ``track``)."""
        if self._slots is None:
            return set()
        return {number for number in self._slots if number >= 0}

    def restart(self, broken: ProcessPoolExecutor | None) -> None:
        """Start the pool anew if it is still ``broken`` (once for all callers)."""
        with self._lock:
            if broken is not None and self._pool is broken:
                broken.shutdown(wait=False, cancel_futures=True)
                self._pool = self._start()

    def close(self, *, wait: bool = True) -> None:
        """Stop the workers (after the work handed to them)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=True)
        if self._owns_local and self._local is not None and self._local.store is not None:
            self._local.store.close()
            self._local = None

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
