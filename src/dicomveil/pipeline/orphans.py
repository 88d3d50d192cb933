"""Worker processes that die with their parent.

A worker forked by ``deid`` inherits its standard output and error. When the parent is killed
outright (``kill -9``: no clean-up runs), a worker left alive keeps those pipes open, so
whoever ran ``deid`` waits forever for the end of its output, and keeps de-identifying files
for nobody. :func:`die_with_parent`, called first in each worker, prevents that:

- on Linux the kernel sends the worker ``SIGKILL`` when its parent dies
  (``prctl(PR_SET_PDEATHSIG)``);
- everywhere, a daemon thread checks once a second that the parent is still there, and ends
  the worker when it is not (the fallback, and the only guard elsewhere).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from typing import Final

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG: Final = 1
_CHECK_SECONDS: Final = 1.0


def die_with_parent(parent: int, interval: float = _CHECK_SECONDS) -> None:
    """Make this process end when ``parent`` (the process that started the run) ends.

    ``parent`` need not be this process's direct parent (a ``forkserver`` may stand between
    them; it ends with the run's process, and its children with it).
    """
    direct = os.getppid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if not _alive(parent, direct):  # it died before the signal was asked for
        os._exit(1)
    watch = threading.Thread(
        target=_watch, args=(parent, direct, interval), name="dicomveil-parent", daemon=True
    )
    watch.start()


def _alive(parent: int, direct: int) -> bool:
    if os.getppid() != direct:  # re-parented: the direct parent has gone
        return False
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process now: ours is gone
        return False
    return True


def _watch(parent: int, direct: int, interval: float) -> None:
    event = threading.Event()
    while not event.wait(interval):
        if not _alive(parent, direct):
            os._exit(1)
