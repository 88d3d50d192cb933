"""Start ``dicomveil serve`` as a real process on a free loopback port, for client tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import free_port, start, stop, wait_http

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Gateway:
    """A running gateway: its base URL, state folder and one token per role."""

    url: str
    home: Path
    tokens: dict[str, str]
    log: Path
    pid: int = 0


def command(*args: str) -> list[str]:
    """The command line running the CLI app under test with ``args``."""
    return [sys.executable, "-m", "tests.web.cliapp", *args]


def environment(home: Path, key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMVEIL_")}
    env.update(
        {
            "DICOMVEIL_HOME": str(home),
            "DICOMVEIL_KEY": key,
            "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
        }
    )
    return env


def create_token(home: Path, key: str, role: str) -> str:
    """Run ``tokens create --role ROLE`` and return the token from its last stdout line."""
    done = subprocess.run(
        command("tokens", "create", "--role", role, "--name", f"it-{role}"),
        env=environment(home, key),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


@contextmanager
def running_gateway(
    home: Path,
    key: str,
    *,
    args: Sequence[str] = (),
    scheme: str = "http",
    nofile: int | None = None,
) -> Iterator[Gateway]:
    """Run ``serve --host 127.0.0.1 --port P`` until the block ends (stopped in ``finally``).

    ``nofile``: the server's file descriptor limit (default: the test process's).
    """
    home.mkdir(parents=True, exist_ok=True)
    tokens = {
        role: create_token(home, key, role) for role in ("ingest", "read", "reidentify", "admin")
    }
    port = free_port()
    log = home.parent / f"gateway-{port}.log"
    env = environment(home, key)
    if nofile is not None:
        env["DICOMVEIL_TEST_NOFILE"] = str(nofile)
    proc = start(command("serve", "--host", "127.0.0.1", "--port", str(port), *args), log, env=env)
    try:
        url = f"{scheme}://127.0.0.1:{port}"
        if scheme == "http":
            wait_http(url + "/healthz", timeout=30, proc=proc)
        else:
            from tests.support.servers import wait_tcp

            wait_tcp(port, timeout=30, proc=proc)
        yield Gateway(url, home, tokens, log, proc.pid)
    finally:
        stop(proc)
