"""The large queue's own worker process, so a 2 GB instance never holds a STAT study's slot.

Celery runs one pool per worker: a worker that serves ``stat`` and ``large`` with one task
slot (or with as many slots as there are large instances queued) de-identifies a 2 GB
instance while a STAT study waits behind it. So when ``dicomveil worker`` is asked to serve
the large queue *and* others, it serves the others itself and starts a second worker process
for ``large`` alone (``--large-concurrency`` tasks at once, default 1; 0 keeps one pool). The
child has the same settings and state folder, dies with its parent (``PR_SET_PDEATHSIG``, and
a watch thread), and is stopped warmly when the parent stops. The broker URL reaches it in
its environment, never on its command line (``ps`` shows command lines, with passwords).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from dicomveil.cluster.queues import LARGE_QUEUE

__all__ = ["split_large", "start_large_worker", "stop_large_worker"]

PARENT_OPTION = "--with-parent"
"""The hidden option that tells the child which process it must not outlive."""


def split_large(queues: Sequence[str], large_concurrency: int) -> tuple[tuple[str, ...], bool]:
    """The queues this process serves, and whether the large queue gets a process of its own.

    Only when ``queues`` holds the large queue and at least one other, and
    ``large_concurrency`` is positive.
    """
    served = tuple(queues)
    if large_concurrency <= 0 or LARGE_QUEUE not in served or len(served) == 1:
        return served, False
    return tuple(q for q in served if q != LARGE_QUEUE), True


def start_large_worker(
    *,
    queue_url: str,
    home: Path,
    concurrency: int,
    config: Path | None = None,
    incoming: str | None = None,
    verbose: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``dicomveil worker --queues large`` as a child of this process."""
    cmd = [sys.executable, "-m", "dicomveil", "worker", "--queues", LARGE_QUEUE]
    cmd += ["--concurrency", str(concurrency), "--large-concurrency", "0"]
    cmd += [PARENT_OPTION, str(os.getpid())]
    if config is not None:
        cmd += ["--config", str(config)]
    if incoming is not None:
        cmd += ["--incoming", incoming]
    if verbose:
        cmd.append("--verbose")
    env = {**os.environ, "DICOMVEIL_QUEUE": queue_url, "DICOMVEIL_HOME": str(home)}
    return subprocess.Popen(cmd, env=env)


def stop_large_worker(proc: subprocess.Popen[bytes]) -> None:
    """Ask the child for a warm shutdown (it finishes the task in hand) and wait for it."""
    if proc.poll() is None:
        proc.terminate()
    proc.wait()
