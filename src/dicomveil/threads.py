"""Thread pools that survive ``fork``: one executor per process, started on first use.

A child forked after its parent used a :class:`~concurrent.futures.ThreadPoolExecutor`
inherits the executor but not its threads: the executor believes it has an idle thread, so
work handed to it in the child never runs and whoever waits for it waits for ever (it hung a
test run once: a ``multiprocessing`` worker forked from a process that had recorded a run).
:class:`ProcessThreads` makes a new executor in each process: a fork hook forgets the
inherited one (and its lock, which another thread may have held at the fork), and the
process id is checked as well.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["ProcessThreads"]


class ProcessThreads:
    """``count`` threads named ``name-N``: this process's executor, made on first use.

    Create instances at module level (each registers a fork hook that lives as long as the
    process).
    """

    def __init__(self, name: str, count: int) -> None:
        self.name, self.count = name, count
        self._lock = threading.Lock()
        self._made: tuple[int, ThreadPoolExecutor] | None = None
        os.register_at_fork(after_in_child=self._forget)

    def get(self) -> ThreadPoolExecutor:
        """This process's executor (started on first use, again after a fork)."""
        with self._lock:
            if self._made is None or self._made[0] != os.getpid():
                executor = ThreadPoolExecutor(self.count, thread_name_prefix=self.name)
                self._made = (os.getpid(), executor)
            return self._made[1]

    def shutdown(self) -> None:
        """Stop this process's threads once their work is done (a later use starts new ones)."""
        with self._lock:
            made, self._made = self._made, None
        if made is not None and made[0] == os.getpid():
            made[1].shutdown(wait=True)

    def _forget(self) -> None:
        """In a forked child: drop the parent's executor and lock."""
        self._lock, self._made = threading.Lock(), None
