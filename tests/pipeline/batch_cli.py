"""Run ``dicomveil ARGV`` as a real process that may SIGKILL itself at a chosen point.

``BATCH_CRASH_AT`` names the point (empty: no crash); the whole process group (the CLI and its
de-identification workers) is killed with SIGKILL, as ``kill -9`` would, leaving whatever
was in flight half done:

- ``deidentify:N``  when the Nth de-identified file reaches the parent (before it is recorded)
- ``vault:N``       right after the Nth vault write, before the journal records those files
- ``upload:N``      as the Nth object upload starts
- ``uploaded:N``    right after the Nth object is stored, before the journal records it
- ``manifest``      as the manifest upload starts
- ``manifested``    right after the manifest is stored, before the batch is marked complete

Journal commits are made frequent so that each point falls between commits.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def _die() -> None:
    sys.stderr.flush()
    os.killpg(os.getpgid(0), signal.SIGKILL)


def _counting(point: str, limit: int, original: Callable[..., Any], *, after: bool) -> Any:
    calls = {"n": 0}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if not after and calls["n"] >= limit:
            _die()
        result = original(*args, **kwargs)
        if after and calls["n"] >= limit:
            _die()
        return result

    return wrapper


def _install(spec: str) -> None:
    from dicomveil.pipeline import batch_runner, batch_ship
    from dicomveil.pipeline.recording import RunRecorder
    from dicomveil.storage._base import BaseBlobStore

    batch_runner._COMMIT_EVERY = batch_ship._COMMIT_EVERY = 3
    point, _, count = spec.partition(":")
    limit = int(count or 1)
    if point == "deidentify":
        RunRecorder.add = _counting(point, limit, RunRecorder.add, after=False)  # type: ignore[method-assign]
    elif point == "vault":
        original_flush = RunRecorder.flush

        def flush(self: RunRecorder) -> None:
            had = bool(self._records)
            original_flush(self)
            if had:
                vault_flush(self)

        vault_flush = _counting(point, limit, lambda self: None, after=True)
        RunRecorder.flush = flush  # type: ignore[method-assign]
    elif point in ("upload", "uploaded", "manifest", "manifested"):
        put_file = BaseBlobStore.put_file
        counter = _counting(point, limit, put_file, after=point.endswith("ed"))

        def patched(self: BaseBlobStore, key: str, *args: Any, **kwargs: Any) -> Any:
            if key.endswith("manifest.json") == point.startswith("manifest"):
                return counter(self, key, *args, **kwargs)
            return put_file(self, key, *args, **kwargs)

        BaseBlobStore.put_file = patched  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown crash point {spec!r}")


def main() -> int:
    """Install the crash point, then run the CLI."""
    spec = os.environ.get("BATCH_CRASH_AT", "")
    if spec:
        _install(spec)
    from tests.pipeline.batch_support import cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
