"""Waiting for forked children in tests."""

from __future__ import annotations

import os
import signal
import time


def wait_child(pid: int, seconds: float) -> int | None:
    """The child's exit status, or ``None`` (and the child killed) after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None
