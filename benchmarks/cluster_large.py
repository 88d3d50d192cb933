"""A large instance in flight against a STAT study (issue 15): ``cluster_bench.py --large``.

One ``dicomveil worker`` (``--concurrency 2``, default queues: the large queue in a child
worker process of its own) on Redis, PostgreSQL (vault, index), file archive and incoming
store. First a small STAT study is queued ``--stat-rounds`` times alone; then a synthetic
multi-frame CT instance of ``--large-mb`` MB (uncompressed 512x512 16-bit frames, written to
disk piece by piece, never held in memory) is queued, and once its task has started, the
same STAT study (fresh UIDs each time) is queued again ``--stat-rounds`` times. A round's time
runs from the study queued to all of its instances indexed. The workers' peak resident
memory (``VmHWM``) is read from ``/proc`` before they stop.
"""

from __future__ import annotations

import hashlib
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.servers import start, stop

FRAME_SIDE = 512
LARGE_TIMEOUT = 1800.0


@dataclass
class LargeResult:
    """What :func:`run` measured (seconds, bytes)."""

    alone: list[float] = field(default_factory=list)
    """STAT study, queued to indexed, with nothing else in flight."""
    beside: list[float] = field(default_factory=list)
    """The same, with the large instance in flight."""
    in_flight: list[bool] = field(default_factory=list)
    """Whether the large instance was still in flight when each of those rounds ended."""
    large_bytes: int = 0
    large_seconds: float = 0.0
    """The large instance: queued to indexed."""
    peak_rss: dict[str, int] = field(default_factory=dict)
    """Peak resident memory of each worker process (``parent``, ``large``)."""


def write_large_instance(path: Path, megabytes: int) -> int:
    """Write a multi-frame CT instance of about ``megabytes`` MB; return its size.

    The header comes from pydicom; the Pixel Data element is written by hand, one frame at a
    time (explicit VR little endian, ``OW``, defined length), so memory stays at one frame.
    """
    import numpy as np
    from pydicom.uid import ExplicitVRLittleEndian

    from dicomveil.demo import write_demo_study

    (template,) = write_demo_study(
        path.parent / "template", patients=1, series_per_study=1, images_per_series=1, seed=77
    )
    import pydicom

    ds = pydicom.dcmread(template)
    frame_bytes = FRAME_SIDE * FRAME_SIDE * 2
    frames = max(1, megabytes * 1024 * 1024 // frame_bytes)
    ds.Rows = ds.Columns = FRAME_SIDE
    ds.NumberOfFrames = frames
    del ds.PixelData
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    ramp = (np.arange(FRAME_SIDE * FRAME_SIDE, dtype=np.uint32) % 4096).astype("<u2")
    with open(path, "ab") as out:
        out.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, frames * frame_bytes))
        for number in range(frames):
            out.write(np.roll(ramp, number).tobytes())
    return path.stat().st_size


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def run(
    env: dict[str, str],
    root: Path,
    *,
    submitter: Callable[[dict[str, str]], Any],
    indexed: Callable[[], int],
    large_mb: int,
    stat_rounds: int,
    stat_images: int,
) -> LargeResult:
    """Start the worker; time the STAT study alone, then beside the large instance."""
    from dicomveil.cluster.queues import Priority
    from dicomveil.demo import write_demo_study
    from dicomveil.pipeline.ingest import Origin

    origin = Origin(entry="stow", actor="bench")
    result = LargeResult()
    large_path = root / "large" / "large.dcm"
    large_path.parent.mkdir(parents=True)
    result.large_bytes = write_large_instance(large_path, large_mb)
    home = root / "home-large-bench"
    home.mkdir()
    log = root / "large-worker.log"
    cmd = [sys.executable, "-m", "dicomveil", "worker", "--concurrency", "2", "--verbose"]
    worker = start(cmd, log, {**env, "DICOMVEIL_HOME": str(home)})
    stat_sender, bulk_sender = submitter(env), submitter(env)
    stat_sender.priority = Priority.STAT
    rounds = iter(range(1, 2 * stat_rounds + 2))

    def stat_round() -> float:
        number = next(rounds)
        files = write_demo_study(
            root / f"stat-{number}", patients=1, series_per_study=1,
            images_per_series=stat_images, seed=500 + number,
        )  # fmt: skip
        target = indexed() + len(files)
        began = time.monotonic()
        stat_sender.ingest(files, origin)
        while indexed() < target:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited; see {log}")
            time.sleep(0.05)
        return time.monotonic() - began

    try:
        stat_round()  # warm: the runtime opened, tables made
        result.alone = [stat_round() for _ in range(stat_rounds)]
        baseline = indexed()
        queued = time.monotonic()
        bulk_sender.ingest([large_path], origin)
        tail = _sha256(large_path)[-12:]
        while f"{tail}.dcm started".encode() not in log.read_bytes():
            if time.monotonic() - queued > LARGE_TIMEOUT or worker.poll() is not None:
                raise RuntimeError(f"the large instance did not start; see {log}")
            time.sleep(0.05)
        for _ in range(stat_rounds):
            result.beside.append(stat_round())
            result.in_flight.append(f"{tail}.dcm in ".encode() not in log.read_bytes())
        while indexed() < baseline + stat_images * stat_rounds + 1:
            if time.monotonic() - queued > LARGE_TIMEOUT or worker.poll() is not None:
                raise RuntimeError(f"the large instance was not indexed; see {log}")
            time.sleep(0.2)
        result.large_seconds = time.monotonic() - queued
        result.peak_rss["parent"] = _peak_rss(worker.pid)
        for child in _children(worker.pid):
            result.peak_rss["large"] = max(result.peak_rss.get("large", 0), _peak_rss(child))
    finally:
        stop(worker, timeout=60)
        stat_sender.close()
        bulk_sender.close()
    return result
