"""Benchmark: dicomio read+write round trip of a folder of CT slices versus ``cp -r``.

Not collected by pytest. Run::

    .venv/bin/python -m tests.dicomio.bench_roundtrip [--files 300] [--rounds 7] [--hash]

The corpus (0.5 MB explicit VR little endian CT slices with ~100 top-level elements) is
generated once into a cache folder; page cache warm. Each round copies the corpus with
``cp -r`` and round-trips it with one and with two worker processes (started before
timing, as a pool would be), each into a fresh folder. Medians and best times are
printed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from dicomveil.dicomio import read_instance, write_instance
from tests.dicomio.synth import write_ct_folder


def _round_trip(job: tuple[list[str], str, bool]) -> int:
    files, out, hash_output = job
    folder = Path(out)
    for i, name in enumerate(files):
        instance = read_instance(name)
        write_instance(
            instance,
            instance.dataset,
            instance.trailing,
            folder / f"{i}.dcm",
            hash_output=hash_output,
        )
    return len(files)


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--hash", action="store_true", help="hash outputs (SHA-256)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "dv_bench")
    args = parser.parse_args()

    corpus = args.workdir / f"corpus_{args.files}"
    if not corpus.exists():
        write_ct_folder(corpus.with_suffix(".tmp"), args.files)
        corpus.with_suffix(".tmp").rename(corpus)
    files = sorted(str(p) for p in corpus.iterdir())
    halves = [files[0::2], files[1::2]]
    size_mb = sum(os.path.getsize(f) for f in files) / 1e6
    _round_trip((files[:5], str(_fresh(args.workdir / "warm")), args.hash))  # warm up

    times: dict[str, list[float]] = {
        "cp -r": [],
        "dicomio 1 process": [],
        "dicomio 2 processes": [],
    }
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_round_trip, [([], "", False)] * 2)
        for _ in range(args.rounds):
            target = args.workdir / "cp_out"
            shutil.rmtree(target, ignore_errors=True)
            os.sync()
            start = time.perf_counter()
            subprocess.run(["cp", "-r", str(corpus), str(target)], check=True)
            times["cp -r"].append(time.perf_counter() - start)

            out = _fresh(args.workdir / "one")
            os.sync()
            start = time.perf_counter()
            _round_trip((files, str(out), args.hash))
            times["dicomio 1 process"].append(time.perf_counter() - start)

            outs = [_fresh(args.workdir / f"two_{i}") for i in range(2)]
            os.sync()
            start = time.perf_counter()
            pool.map(
                _round_trip, [(h, str(o), args.hash) for h, o in zip(halves, outs, strict=True)]
            )
            times["dicomio 2 processes"].append(time.perf_counter() - start)

    base = statistics.median(times["cp -r"])
    print(f"{len(files)} files, {size_mb:.0f} MB, {args.rounds} rounds, hash={args.hash}")
    print(f"{'':22s} {'median ms':>10s} {'best ms':>8s} {'files/s':>8s} {'x cp':>6s}")
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"{name:22s} {median * 1000:10.0f} {min(values) * 1000:8.0f} "
            f"{len(files) / median:8.0f} {median / base:6.2f}"
        )


if __name__ == "__main__":
    main()
