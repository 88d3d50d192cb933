"""A routing process for the kill -9 test: ``python -m tests.forward.forward_proc ...``.

Arguments: HOME TOML FILES PAUSE_AT PAUSE_FILE. Routing starts, then, with a FILES list
(JSON list of original paths), the files are ingested through the runtime's ingest service,
one per call, with routing subscribed (as ``dicomveil scp`` would): on-arrival forwards send
while they arrive. The archive is read
through a store that, at its PAUSE_AT-th read (0: never), creates PAUSE_FILE and sleeps: the
test kills the process there, mid-forward. The process exits 0 when no job is left to run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from dicomveil.forward.service import Forwarding
from dicomveil.runtime import Runtime
from dicomveil.storage import BaseBlobStore
from tests.forward.support import ingest, open_runtime


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


class Reader:
    """The runtime as routing sees it, reading the archive through a :class:`PausingStore`."""

    def __init__(self, runtime: Runtime, store: PausingStore) -> None:
        self.settings, self.audit, self.store = runtime.settings, runtime.audit, store


def main(argv: list[str]) -> int:
    home, toml, files, pause_at, pause_file = argv
    runtime = open_runtime(Path(home))
    reader = Reader(runtime, PausingStore(runtime.store, int(pause_at), Path(pause_file)))
    forwarding = Forwarding.open(Path(toml), reader)
    runtime.ingest.subscribe(forwarding.listener)
    forwarding.start()
    try:
        if files != "-":
            ingest(runtime, [Path(p) for p in json.loads(Path(files).read_text())])
        while True:
            counts = forwarding.queue.counts()
            if counts["done"] + counts["dead"] and not counts["queued"] + counts["running"]:
                return 0
            time.sleep(0.1)
    finally:
        forwarding.stop()
        runtime.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
