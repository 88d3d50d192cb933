"""Start ``dicomveil scp`` as a real process on a free loopback port."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.servers import free_port, start, stop, wait_tcp
from tests.web.gateway_server import environment


@dataclass(frozen=True)
class Node:
    """A running ``dicomveil scp``: port, state folder, log file and process."""

    port: int
    home: Path
    log: Path
    proc: Any


def scp_command(*args: str) -> list[str]:
    """The command line running ``dicomveil`` with ``args`` in a fresh interpreter."""
    return [sys.executable, "-m", "dicomveil", *args]


@contextmanager
def running_scp(
    home: Path, key: str, *, args: Sequence[str] = (), port: int | None = None
) -> Iterator[Node]:
    """Run ``dicomveil scp --port P`` until the block ends (stopped in ``finally``)."""
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = home.parent / f"scp-{port}.log"
    proc = start(scp_command("scp", "--port", str(port), *args), log, env=environment(home, key))
    try:
        wait_tcp(port, timeout=30, proc=proc)
        yield Node(port, home, log, proc)
    finally:
        stop(proc)
