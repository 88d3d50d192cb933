"""A routing process for the kill -9 test: ``python -m tests.forward.forward_proc ...``.

Arguments: HOME TOML EVENTS PAUSE_AT PAUSE_FILE. With an EVENTS file (JSON list of stored
instances) the events are recorded first, as the ingest listener would. The archive is read
through a store that, at its PAUSE_AT-th read (0: never), creates PAUSE_FILE and sleeps: the
test kills the process there, mid-forward. The process exits 0 when no job is left to run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from dicomveil.forward.service import Forwarding
from dicomveil.storage import BaseBlobStore
from tests.forward.support import Origin, Runtime, Stored


class PausingStore:
    """Reads from the archive; pauses (for the killer) at one read."""

    def __init__(self, inner: BaseBlobStore, pause_at: int, pause_file: Path) -> None:
        self.inner, self.pause_at, self.pause_file, self.reads = inner, pause_at, pause_file, 0

    def get_bytes(self, key: str) -> bytes:
        self.reads += 1
        if self.reads == self.pause_at:
            self.pause_file.touch()
            time.sleep(600)
        return self.inner.get_bytes(key)


def main(argv: list[str]) -> int:
    home, toml, events_file, pause_at, pause_file = argv
    runtime = Runtime.open(Path(home))
    runtime.store = PausingStore(runtime.store, int(pause_at), Path(pause_file))  # type: ignore[assignment]
    forwarding = Forwarding.open(Path(toml), runtime)
    if events_file != "-":
        rows = json.loads(Path(events_file).read_text())
        forwarding.listener([Stored(**{**r, "origin": Origin(**r["origin"])}) for r in rows])
    forwarding.start()
    try:
        while True:
            counts = forwarding.queue.counts()
            if counts["done"] + counts["dead"] and not counts["queued"] + counts["running"]:
                return 0
            time.sleep(0.1)
    finally:
        forwarding.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
