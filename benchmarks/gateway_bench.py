"""Benchmark of the gateway (issue 6) against Orthanc + its DICOMweb plugin, one command.

    .venv/bin/python benchmarks/gateway_bench.py [--stow 2000] [--qido 100000] [--write-docs]

Both servers run on this machine, on loopback, fed the same synthetic CT corpus
(:func:`dicomveil.demo.write_demo_study`, 64x64 16-bit images; 20 images per study):

- **STOW-RS ingest**: ``--stow`` instances sent to ``POST .../studies`` in requests of
  ``--per-request`` instances from ``--clients`` concurrent clients; instances/s from the first
  request to the last answer. Both servers run at once and first store a few instances
  untimed; then ``--rounds`` rounds alternate which goes first, each round on new instances;
  the median round counts. dicomveil de-identifies,
  archives, records the way back and indexes each instance; Orthanc only stores.
- **QIDO-RS study search**: both archives are filled up to ``--qido`` instances (the same
  way), then ``--queries`` searches of each kind (all studies, PatientID exact, PatientName
  wild card, StudyDate range, ModalitiesInStudy; ``limit=100``) are timed one by one; p50 and
  p95 per server. Each server is asked for its own values (dicomveil holds pseudonyms).

``--write-docs`` replaces the "Gateway (issue 6)" section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from benchmarks.reporting import cpu_model, write_section  # noqa: E402

KEY = "benchmark-pseudonym-key-0123456789abcdef"
SECTION = "## Gateway (issue 6)"
PER_STUDY = 20
WARMUP = 200
"""Instances each server stores before the timed rounds (not counted anywhere)."""


def corpus(folder: Path, instances: int, seed: int) -> list[Path]:
    """Write ``instances`` CT images, ``PER_STUDY`` per study (one study per patient)."""
    from dicomveil.demo import write_demo_study

    studies = max(1, instances // PER_STUDY)
    return write_demo_study(
        folder, patients=studies, series_per_study=1, images_per_series=PER_STUDY,
        rows=64, columns=64, seed=seed,
    )  # fmt: skip


def related(parts: list[bytes]) -> tuple[str, bytes]:
    boundary = "bench-" + secrets.token_hex(8)
    chunks = []
    for data in parts:
        chunks += [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(), data]
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return f'multipart/related; type="application/dicom"; boundary={boundary}', b"".join(chunks)


def stow(root: str, headers: dict[str, str], files: list[Path], per: int, clients: int) -> float:
    """Send ``files`` to ``root``/studies; return instances per second."""
    import httpx

    bodies = [
        related([p.read_bytes() for p in files[i : i + per]]) for i in range(0, len(files), per)
    ]
    local = threading.local()

    def send(request: tuple[str, bytes]) -> None:
        if not hasattr(local, "client"):  # one keep-alive connection per client thread
            local.client = httpx.Client(timeout=300, headers=headers)
        content_type, body = request
        answer = local.client.post(
            f"{root}/studies", content=body, headers={"Content-Type": content_type}
        )
        if answer.status_code != 200:
            raise RuntimeError(f"STOW failed: {answer.status_code} {answer.text[:200]}")

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, bodies))
    return len(files) / (time.perf_counter() - started)


def queries(root: str, headers: dict[str, str]) -> dict[str, list[dict[str, str]]]:
    """The searches to time, with values taken from the server's own studies."""
    import httpx

    found = httpx.get(
        f"{root}/studies", params={"limit": "200"}, headers=headers, timeout=60
    ).json()

    def value(item: dict[str, Any], tag: str) -> str:
        entry = item.get(tag, {}).get("Value", [""])
        first = entry[0] if isinstance(entry, list) else entry
        return str(first.get("Alphabetic", "") if isinstance(first, dict) else first)

    picks = found[:: max(1, len(found) // 20)][:20]
    return {
        "all studies": [{}],
        "PatientID": [{"PatientID": value(i, "00100020")} for i in picks],
        "PatientName*": [{"PatientName": value(i, "00100010")[:4] + "*"} for i in picks],
        "StudyDate range": [{"StudyDate": "19000101-20221231"}],
        "ModalitiesInStudy": [{"ModalitiesInStudy": "CT"}],
    }


def qido(root: str, headers: dict[str, str], repeat: int) -> dict[str, tuple[float, float]]:
    """p50 and p95 (ms) per kind of search."""
    import httpx

    out = {}
    with httpx.Client(timeout=60, headers=headers) as client:
        for kind, params_list in queries(root, headers).items():
            times = []
            for n in range(repeat):
                params = {**params_list[n % len(params_list)], "limit": "100"}
                started = time.perf_counter()
                answer = client.get(f"{root}/studies", params=params)
                times.append((time.perf_counter() - started) * 1000)
                if answer.status_code != 200:
                    raise RuntimeError(f"QIDO failed: {answer.status_code}")
            times.sort()
            out[kind] = (statistics.median(times), times[int(0.95 * (len(times) - 1))])
    return out


@contextmanager
def servers(
    work: Path, workers: int, extra: tuple[str, ...] = ()
) -> Iterator[list[tuple[str, str, dict[str, str], dict[str, str]]]]:
    """Run dicomveil and Orthanc side by side; give (name, DICOMweb root, headers to store,
    headers to search) of each (dicomveil: an ingest token and a read token, the separation
    of duties)."""
    from tests.web.gateway_server import running_gateway
    from tests.web.orthanc_server import running_orthanc

    args = ("--workers", str(workers), *extra)
    with (
        running_gateway(work / "dicomveil" / "home", KEY, args=args) as gateway,
        running_orthanc(work / "orthanc") as url,
    ):
        ingest = {"Authorization": f"Bearer {gateway.tokens['ingest']}"}
        read = {"Authorization": f"Bearer {gateway.tokens['read']}"}
        yield [
            ("dicomveil", f"{gateway.url}/dicomweb", ingest, read),
            ("Orthanc", f"{url}/dicom-web", {}, {}),
        ]


def run(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="dicomveil-gateway-bench-"))
    try:
        return _run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, work: Path) -> dict[str, dict[str, Any]]:
    timed = args.stow * args.rounds
    print(f"writing corpus ({args.rounds} x {args.stow} + {max(args.qido - timed, 0)}) ...")
    rounds = [corpus(work / f"stow-{n}", args.stow, seed=n + 1) for n in range(args.rounds)]
    warmup = corpus(work / "warmup", WARMUP, seed=args.rounds + 2)
    extra_count = max(args.qido - timed, 0) if args.qido else 0
    fill = corpus(work / "fill", extra_count, seed=args.rounds + 1) if extra_count else []
    results: dict[str, dict[str, Any]] = {}
    extra = () if args.fsync else ("--no-archive-fsync",)
    with servers(work, args.workers, extra) as running:
        rates: dict[str, list[float]] = {name: [] for name, _, _, _ in running}
        for _, root, headers, _ in running:  # first requests: caches, connections, workers
            stow(root, headers, warmup, args.per_request, args.clients)
        for number, files in enumerate(rounds):
            # peers alternate who goes first; each round stores new instances
            order = running if number % 2 == 0 else running[::-1]
            for name, root, headers, _ in order:
                rate = stow(root, headers, files, args.per_request, args.clients)
                rates[name].append(rate)
                print(f"round {number + 1}: {name} STOW-RS {rate:.1f} instances/s")
        for name, root, headers, searching in running:
            if fill:
                print(f"{name}: filling to {timed + len(fill)} instances ...")
                stow(root, headers, fill, 50, args.clients)
            latencies = qido(root, searching, args.queries)
            results[name] = {
                "stow": statistics.median(rates[name]),
                "rounds": rates[name],
                "qido": latencies,
                "instances": timed + len(fill),
            }
            for kind, (p50, p95) in latencies.items():
                print(f"  {name} {kind:<18} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms")
    return results


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    ours, theirs = results["dicomveil"], results["Orthanc"]
    lines = [
        f"Command: `{command}`",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; both servers on loopback: dicomveil "
        f"(`serve --workers {args.workers}{'' if args.fsync else ' --no-archive-fsync'}`, "
        "SQLite index, file archive, vault + audit recorded) and Orthanc "
        "(Debian package, default settings, DICOMweb plugin).",
        "",
        "| | dicomveil | Orthanc | ratio |",
        "|---|---|---|---|",
        f"| STOW-RS ingest, {args.stow} instances, {args.per_request}/request, "
        f"{args.clients} clients (instances/s, median of {args.rounds} rounds) | "
        f"{ours['stow']:.1f} | {theirs['stow']:.1f} | {ours['stow'] / theirs['stow']:.2f} |",
    ]
    for kind in ours["qido"]:
        p95_ours, p95_theirs = ours["qido"][kind][1], theirs["qido"][kind][1]
        lines.append(
            f"| QIDO-RS /studies {kind}, p95 ms at {ours['instances']} instances | "
            f"{p95_ours:.1f} | {p95_theirs:.1f} | {p95_ours / p95_theirs:.2f} |"
        )
    per_round = ", ".join(
        f"{a / b:.2f}" for a, b in zip(ours["rounds"], theirs["rounds"], strict=True)
    )
    lines += [
        "",
        "dicomveil de-identifies every instance on the way in (Orthanc only stores); ratio is "
        "dicomveil / Orthanc (higher is better for ingest, lower for latency). STOW-RS rounds "
        "alternate which server goes first, each on new instances; ratio per round: "
        f"{per_round}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stow", type=int, default=2000, help="Instances timed for STOW-RS.")
    parser.add_argument("--qido", type=int, default=100_000, help="Instances indexed for QIDO.")
    parser.add_argument("--per-request", type=int, default=20, help="Instances per STOW request.")
    parser.add_argument("--clients", type=int, default=2, help="Concurrent STOW clients.")
    parser.add_argument("--rounds", type=int, default=3, help="Timed STOW-RS rounds per server.")
    parser.add_argument("--queries", type=int, default=100, help="Searches timed per kind.")
    parser.add_argument("--workers", type=int, default=1, help="dicomveil server processes.")
    parser.add_argument(
        "--no-fsync", dest="fsync", action="store_false", help="Serve with --no-archive-fsync."
    )
    parser.add_argument("--write-docs", action="store_true", help="Update docs/benchmarks.md.")
    args = parser.parse_args(argv)
    results = run(args)
    command = "python benchmarks/gateway_bench.py " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:]) if a != "--write-docs"
    )
    text = report(results, args, command.strip())
    print(text)
    if args.write_docs:
        write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
