"""Single-file ingest latency through the ingest service (issue #12).

    .venv/bin/python -m benchmarks.ingest_latency [--files 200] [--threads 1,4,8]
        [--processes 0]

The DICOM node calls :meth:`~dicomveil.pipeline.ingest.IngestService.ingest` once per
C-STORE, from one thread per association: the call must be cheap (no pool start-up per call).
This opens a :class:`~dicomveil.runtime.Runtime` in a temporary state folder (file archive
without fsync, SQLite index, vault and audit log as configured by default), then ingests
``--files`` synthetic CT instances one per call, from 1, 4 and 8 threads at once, and prints
p50/p95 latency per call and instances/s. Nothing is kept.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from dicomveil.demo import write_demo_study
from dicomveil.pipeline.ingest import Origin
from dicomveil.runtime import Runtime
from dicomveil.settings import CoreSettings

ORIGIN = Origin(entry="dimse", actor="ae:BENCH", calling_ae="BENCH")


def _run(runtime: Runtime, files: list[Path], threads: int) -> dict[str, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    queue = list(files)

    def worker() -> None:
        while True:
            with lock:
                if not queue:
                    return
                path = queue.pop()
            start = time.perf_counter()
            (result,) = runtime.ingest.ingest([path], ORIGIN)
            took = time.perf_counter() - start
            if not result.ok:
                raise SystemExit(f"ingest failed: {result.failure}")
            with lock:
                latencies.append(took)

    began = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    wall = time.perf_counter() - began
    latencies.sort()
    return {
        "threads": threads,
        "files": len(latencies),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p95_ms": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 2),
        "per_second": round(len(latencies) / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--threads", default="1,4,8")
    parser.add_argument("--processes", type=int, default=0, help="deid_processes (0: cores)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        key = root / "key"
        key.write_text("ingest-latency-benchmark-key-0123456789")
        per_series = max(1, args.files // 4)
        files = write_demo_study(
            root / "in", patients=2, series_per_study=2, images_per_series=per_series
        )
        settings = CoreSettings(
            home=root / "home", key_file=key, archive_fsync=False, deid_processes=args.processes
        )
        rows = []
        with Runtime.open(settings) as runtime:
            runtime.ingest.ingest(files[:2], ORIGIN)  # workers started and warm
            for threads in (int(t) for t in args.threads.split(",")):
                home = root / f"copy-{threads}"
                home.mkdir()
                # each round ingests fresh instances (a re-sent one is cheaper: not stored)
                copies = [Path(p) for p in _renamed(files, home, threads)]
                rows.append(_run(runtime, copies, threads))
        print(json.dumps(rows, indent=2))


def _renamed(files: list[Path], folder: Path, salt: int) -> list[str]:
    """Copies of ``files`` with new SOP Instance UIDs (so that each round stores anew)."""
    import pydicom
    from pydicom.uid import generate_uid

    out = []
    for number, path in enumerate(files):
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        target = folder / f"{salt}-{number}.dcm"
        ds.save_as(target)
        out.append(str(target))
    return out


if __name__ == "__main__":
    main()
