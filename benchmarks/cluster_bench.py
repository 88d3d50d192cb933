"""Benchmark of cluster mode (issue 15): queue workers on Celery, one command.

    .venv/bin/python benchmarks/cluster_bench.py [--images 300] [--write-docs]

Starts redis-server (append-only file) and PostgreSQL (vault, index) on loopback, writes a
synthetic CT corpus (:func:`dicomveil.demo.write_demo_study`, 64x64 16-bit), then measures:

- **Workers**: the corpus queued as a backlog, then drained by 1, then by 2 ``dicomveil
  worker`` processes (``--concurrency 4``: threads sharing one runtime; separate
  ``$DICOMVEIL_HOME``s, shared archive folder, PostgreSQL, Redis); instances/s from the
  first instance indexed to the last (worker start-up excluded); the ratio 2 / 1 (target
  ≥ 1.8x on 2 cores).
- **Queue overhead**: CPU time of the sending side per message (``Queue.send``: JSON payload,
  publish to Redis), over ``--images`` sends; and of the whole cluster-mode accept
  (SHA-256, write to the incoming store, send).
- **Gateway-side ingest call**: the call a STOW-RS request makes, in process, on the same
  files in requests of 10: single-process mode (``IngestService.ingest``: de-identify, archive,
  vault, audit, index) against cluster mode (``Submitter.ingest``: store, enqueue). Not the
  HTTP request: the difference between the modes is this call.

``--write-docs`` replaces the "Cluster mode (issue 15)" section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from tests.support.servers import free_port, start, stop, wait_tcp  # noqa: E402

from benchmarks.reporting import cpu_model, write_section  # noqa: E402

SECTION = "## Cluster mode (issue 15)"
E2E_SECTION = "## Cluster mode: end-to-end latency (issue 15)"
LARGE_SECTION = "## Cluster mode: a large instance in flight (issue 15)"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
KEY = "benchmark-pseudonym-key-0123456789abcdef"
THREADS = 4
"""Tasks at once per worker process (``--concurrency``; threads sharing one runtime)."""


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class Services:
    """redis-server and PostgreSQL for the run."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.redis_port, self.pg_port = free_port(), free_port()
        self.pg = Path(tempfile.mkdtemp(prefix="dicomveil-bench-pg-"))
        self.redis: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1"]
        cmd += ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]
        self.redis = start([*cmd, "--dir", str(self.root)], self.root / "redis.log")
        wait_tcp(self.redis_port, proc=self.redis)
        self.pg.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(self.pg, "postgres", "postgres")
        data = str(self.pg / "data")
        init = [str(PG_BIN / "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync"]
        subprocess.run(_as_postgres(init), check=True, capture_output=True)
        options = f"-h 127.0.0.1 -p {self.pg_port} -k {self.pg} -c fsync=off"
        run = [str(PG_BIN / "pg_ctl"), "-D", data, "-l", str(self.pg / "log"), "-w", "-o"]
        subprocess.run(_as_postgres([*run, options, "start"]), check=True, capture_output=True)

    def database(self, name: str) -> str:
        import psycopg

        url = f"postgresql://postgres@127.0.0.1:{self.pg_port}/postgres"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.pg_port}/{name}"

    def stop(self) -> None:
        if self.redis is not None:
            stop(self.redis)
        ctl = [str(PG_BIN / "pg_ctl"), "-D", str(self.pg / "data"), "-m", "immediate", "stop"]
        subprocess.run(_as_postgres(ctl), check=False, capture_output=True)
        shutil.rmtree(self.pg, ignore_errors=True)


def _env(services: Services, root: Path, tag: str) -> dict[str, str]:
    return {
        "DICOMVEIL_QUEUE": f"redis://127.0.0.1:{services.redis_port}/0",
        "DICOMVEIL_INCOMING_URL": f"file://{root / f'incoming-{tag}'}",
        "DICOMVEIL_STORAGE_URL": f"file://{root / f'archive-{tag}'}",
        "DICOMVEIL_INDEX_URL": services.database(f"index_{tag}"),
        "DICOMVEIL_VAULT_URL": services.database(f"vault_{tag}"),
        "DICOMVEIL_KEY": KEY,
        "DICOMVEIL_VAULT_KEY": KEY + "-vault",
        "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}",
    }


def _submitter(env: dict[str, str]) -> object:
    from dicomveil.cluster.settings import ClusterSettings
    from dicomveil.cluster.submit import Queue, Submitter
    from dicomveil.engine.keys import PseudonymKeys
    from dicomveil.engine.rules import compile_policy
    from dicomveil.profile.policy import Policy
    from dicomveil.storage import open_store

    settings = ClusterSettings.load(environ=env)
    return Submitter(
        Queue(settings),
        open_store(settings.incoming(Path("/nonexistent"))),
        keys=PseudonymKeys(KEY.encode()),
        compiled=compile_policy(Policy()),
    )


def _indexed(url: str) -> int:
    from dicomveil.index import open_index

    index = open_index(url)
    try:
        return index.counts().instances
    finally:
        index.close()


@dataclass
class Drain:
    """One drain: instances/s, the CPU its workers used and the machine's idle CPU."""

    rate: float
    worker_cores: float
    """CPU seconds of the worker processes per second of the drain (1.0: one core busy)."""
    idle_cores: float
    """The machine's idle CPU over the drain, in cores (0: other jobs took the rest)."""
    services_cores: float
    """CPU of PostgreSQL and Redis over the drain, in cores."""


def _process_cpu(pid: int, *, reaped: bool = False) -> float:
    """CPU seconds (user + system) of a process, from ``/proc``; with ``reaped``, also of its
    children that ended (PostgreSQL backends)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def _services_cpu(services: Services) -> float:
    """CPU seconds of PostgreSQL (postmaster, its live and ended backends) and Redis."""
    assert services.redis is not None
    postmaster = int((services.pg / "data" / "postmaster.pid").read_text().split()[0])
    total = _process_cpu(postmaster, reaped=True) + _process_cpu(services.redis.pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == postmaster:
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            continue  # a process that ended meanwhile
    return total


def _idle_seconds() -> float:
    """The machine's idle CPU seconds so far (all cores; idle + iowait), from ``/proc/stat``."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return (int(fields[3]) + int(fields[4])) / os.sysconf("SC_CLK_TCK")


def drain(services: Services, root: Path, files: list[Path], workers: int) -> Drain:
    """Queue ``files``, start ``workers`` workers; instances/s from first to last indexed."""
    from dicomveil.pipeline.ingest import Origin

    tag = f"w{workers}"
    env = _env(services, root, tag)
    submitter = _submitter(env)
    submitter.ingest(files, Origin(entry="stow", actor="bench"))  # type: ignore[attr-defined]
    procs = []
    for number in range(workers):
        home = root / f"home-{tag}-{number}"
        home.mkdir()
        cmd = [sys.executable, "-m", "dicomveil", "worker", "--queues", "routine"]
        cmd += ["--concurrency", str(THREADS)]
        procs.append(start(cmd, root / f"{tag}-{number}.log", {**env, "DICOMVEIL_HOME": str(home)}))
    try:
        url = env["DICOMVEIL_INDEX_URL"]
        while _indexed(url) == 0:
            time.sleep(0.02)
        cpu, idle = sum(_process_cpu(p.pid) for p in procs), _idle_seconds()
        backing, first = _services_cpu(services), time.monotonic()
        while (count := _indexed(url)) < len(files):
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a worker exited; see {root}")
            time.sleep(0.05)
        wall = time.monotonic() - first
        used = sum(_process_cpu(p.pid) for p in procs) - cpu
        idle_cores = (_idle_seconds() - idle) / wall
        backing = _services_cpu(services) - backing
        return Drain((count - 1) / wall, used / wall, idle_cores, backing / wall)
    finally:
        for proc in procs:
            stop(proc)


def queue_overhead(services: Services, root: Path, files: list[Path]) -> tuple[float, float]:
    """CPU ms per message sent, and per cluster-mode accept (hash, store, send)."""
    from dicomveil.cluster.payload import TaskPayload
    from dicomveil.pipeline.ingest import Origin

    env = _env(services, root, "overhead")
    submitter = _submitter(env)
    queue = submitter.queue  # type: ignore[attr-defined]
    payload = TaskPayload(key="sha256/ab/" + "ab" * 32 + ".dcm", sha256="ab" * 32, size=1)
    queue.send(payload)  # connect first
    began = time.process_time()
    for _ in range(len(files)):
        queue.send(payload)
    send_ms = (time.process_time() - began) * 1000 / len(files)
    began = time.process_time()
    submitter.ingest(files, Origin(entry="stow", actor="bench"))  # type: ignore[attr-defined]
    accept_ms = (time.process_time() - began) * 1000 / len(files)
    return send_ms, accept_ms


def ingest_calls(services: Services, root: Path, files: list[Path]) -> tuple[float, float]:
    """Instances/s of the gateway's ingest call: single-process mode, then cluster mode."""
    from dicomveil.pipeline.ingest import Origin
    from dicomveil.runtime import Runtime
    from dicomveil.settings import CoreSettings

    env = _env(services, root, "gateway")
    origin = Origin(entry="stow", actor="bench")
    batches = [files[i : i + 10] for i in range(0, len(files), 10)]
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        home = root / "home-gateway"
        settings = CoreSettings.load(home=home, index_url=env["DICOMVEIL_INDEX_URL"],
                                     vault_url=env["DICOMVEIL_VAULT_URL"],
                                     storage_url=env["DICOMVEIL_STORAGE_URL"])  # fmt: skip
        with Runtime.open(settings) as runtime:
            runtime.ingest.ingest(files[:1], origin)  # warm: workers started, tables made
            began = time.monotonic()
            for batch in batches:
                runtime.ingest.ingest(batch, origin)
            single = len(files) / (time.monotonic() - began)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    submitter = _submitter(_env(services, root, "gateway2"))
    submitter.ingest(files[:1], origin)  # type: ignore[attr-defined]
    began = time.monotonic()
    for batch in batches:
        submitter.ingest(batch, origin)  # type: ignore[attr-defined]
    cluster = len(files) / (time.monotonic() - began)
    return single, cluster


def end_to_end(args: argparse.Namespace) -> None:
    """``--e2e``: the 500-image study under background load (see :mod:`cluster_e2e`)."""
    from benchmarks import cluster_e2e

    root = Path(tempfile.mkdtemp(prefix="dicomveil-cluster-e2e-"))
    services = Services(root)
    services.start()
    try:
        env = _env(services, root, "e2e")
        result = cluster_e2e.run(
            env, root, rounds=args.rounds, study_images=args.study_images,
            request_size=args.request, rate=args.background, matrix=args.matrix, workers=2,
            threads=THREADS, backlog=lambda: _backlog(services),
            indexed=lambda: _indexed(env["DICOMVEIL_INDEX_URL"]), timeout=args.timeout,
            sender=args.sender,
        )  # fmt: skip
    finally:
        services.stop()
    rows = cluster_e2e.report(
        result, study_images=args.study_images, request_size=args.request, matrix=args.matrix,
        sender=args.sender,
    )  # fmt: skip
    command = (
        f".venv/bin/python benchmarks/cluster_bench.py --e2e --rounds {args.rounds} "
        f"--background {args.background:g} --request {args.request} --matrix {args.matrix} "
        f"--timeout {args.timeout:g} --sender {args.sender}"
    )
    body = "\n".join(
        [
            "A real gateway (`dicomveil serve --queue`, STOW-RS/QIDO-RS/WADO-RS over HTTP) and "
            f"2 `dicomveil worker` processes (`--concurrency {THREADS}`, own `$DICOMVEIL_HOME`s) "
            "on Redis (AOF everysec), PostgreSQL 15 (vault, index), file archive and incoming "
            "store. A background sender (own process) pushes 20-image studies by STOW-RS, "
            "paced to the offered rate; each round pushes a fresh study and times its last "
            "image accepted → QIDO-RS counts all its instances and WADO-RS returns one "
            "(polled every 0.2 s). p95 is over the rounds (nearest rank).",
            "",
            *rows,
            "",
            f"Command: `{command}`",
            "",
            _machine(),
        ]
    )
    print(body)
    if args.write_docs:
        write_section(E2E_SECTION, body)
    shutil.rmtree(root, ignore_errors=True)


def large_in_flight(args: argparse.Namespace) -> None:
    """``--large``: a STAT study alone and beside a large instance (see :mod:`cluster_large`)."""
    from benchmarks import cluster_large

    root = Path(tempfile.mkdtemp(prefix="dicomveil-cluster-large-"))
    services = Services(root)
    services.start()
    try:
        env = _env(services, root, "large")
        result = cluster_large.run(
            env, root, submitter=_submitter, indexed=lambda: _indexed(env["DICOMVEIL_INDEX_URL"]),
            large_mb=args.large_mb, stat_rounds=args.stat_rounds, stat_images=args.stat_images,
        )  # fmt: skip
    finally:
        services.stop()
    alone, beside = max(result.alone), max(result.beside)
    mib = 1024 * 1024
    rows = [
        "| measure | value | target |",
        "|---|---:|---|",
        f"| large instance | {result.large_bytes / mib:.0f} MiB, "
        f"{result.large_bytes // (2 * cluster_large.FRAME_SIDE**2)} frames "
        f"{cluster_large.FRAME_SIDE}x{cluster_large.FRAME_SIDE} | |",
        f"| STAT study ({args.stat_images} images) alone, queued → indexed (s) | "
        f"{', '.join(f'{t:.2f}' for t in result.alone)} | |",
        f"| the same beside the large instance in flight (s) | "
        f"{', '.join(f'{t:.2f}' for t in result.beside)} | |",
        f"| large still in flight at the end of each round | "
        f"{', '.join('yes' if f else 'no' for f in result.in_flight)} | |",
        f"| delay of the STAT study (worst beside − worst alone, s) | {beside - alone:.2f} "
        "| ≤ 5 s |",
        f"| large instance, queued → indexed (s) | {result.large_seconds:.1f} | |",
        f"| peak RSS, worker process (stat, urgent, routine), MiB | "
        f"{result.peak_rss.get('parent', 0) / mib:.0f} | |",
        f"| peak RSS, its large-queue process, MiB | "
        f"{result.peak_rss.get('large', 0) / mib:.0f} | |",
    ]
    command = (
        f".venv/bin/python benchmarks/cluster_bench.py --large --large-mb {args.large_mb} "
        f"--stat-rounds {args.stat_rounds} --stat-images {args.stat_images}"
    )
    body = "\n".join(
        [
            "One `dicomveil worker --concurrency 2` with the default queues (so `large` runs "
            "in its own child process, `--large-concurrency 1`) on Redis, PostgreSQL 15, file "
            "archive and incoming store (`large_bytes` 256 MiB). A STAT study of 64x64 CT "
            "images is queued alone, then again while a synthetic multi-frame CT instance "
            "(uncompressed, written frame by frame) is being ingested; each time from queued "
            "to every instance indexed.",
            "",
            *rows,
            "",
            f"Command: `{command}`",
            "",
            _machine(),
        ]
    )
    print(body)
    if args.write_docs:
        write_section(LARGE_SECTION, body)
    shutil.rmtree(root, ignore_errors=True)


def _backlog(services: Services) -> int:
    """Messages waiting in the broker's queues."""
    import redis

    from dicomveil.cluster.queues import ALL_QUEUES

    client = redis.Redis(port=services.redis_port)
    try:
        return sum(int(client.llen(name)) for name in ALL_QUEUES)
    finally:
        client.close()


def _machine() -> str:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, {platform.platform()}, Python "
        f"{platform.python_version()}; load average at the end {load} (shared machine)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--e2e", action="store_true", help="end-to-end latency (cluster_e2e)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--study-images", type=int, default=500)
    parser.add_argument("--request", type=int, default=50, help="instances per STOW request")
    parser.add_argument("--background", type=float, default=100.0, help="images/s")
    parser.add_argument("--matrix", type=int, default=64, help="rows and columns of an image")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a round waits")
    parser.add_argument("--sender", choices=("stow", "cstore"), default="stow")
    parser.add_argument("--large", action="store_true", help="STAT beside a large instance")
    parser.add_argument("--large-mb", type=int, default=2048)
    parser.add_argument("--stat-rounds", type=int, default=3)
    parser.add_argument("--stat-images", type=int, default=20)
    args = parser.parse_args()
    if args.e2e:
        end_to_end(args)
        return
    if args.large:
        large_in_flight(args)
        return
    from dicomveil.demo import write_demo_study

    root = Path(tempfile.mkdtemp(prefix="dicomveil-cluster-bench-"))
    services = Services(root)
    services.start()
    try:
        per_series = max(1, args.images // 4)
        files = write_demo_study(root / "corpus", patients=2, images_per_series=per_series)
        files = files[: args.images]
        one = drain(services, root, files, 1)
        two = drain(services, root, files, 2)
        send_ms, accept_ms = queue_overhead(services, root, files)
        single, cluster = ingest_calls(services, root, files)
    finally:
        services.stop()
    rows = [
        "| measure | value | target |",
        "|---|---:|---|",
        f"| 1 worker, instances/s | {one.rate:.1f} | |",
        f"| 2 workers, instances/s | {two.rate:.1f} | |",
        f"| 2 workers / 1 worker | {two.rate / one.rate:.2f}x | ≥ 1.8x |",
        f"| CPU of the workers while draining, cores (1 worker; 2 workers) | "
        f"{one.worker_cores:.2f}; {two.worker_cores:.2f} | |",
        f"| CPU of PostgreSQL and Redis while draining, cores (1 worker; 2 workers) | "
        f"{one.services_cores:.2f}; {two.services_cores:.2f} | |",
        f"| idle CPU of the machine while draining, cores (1 worker; 2 workers) | "
        f"{one.idle_cores:.2f}; {two.idle_cores:.2f} | of {os.cpu_count()} |",
        f"| queue send, CPU ms/instance | {send_ms:.2f} | ≤ 2 ms |",
        f"| cluster accept (hash + store + send), CPU ms/instance | {accept_ms:.2f} | |",
        f"| gateway ingest call, single-process, instances/s | {single:.1f} | |",
        f"| gateway ingest call, cluster mode, instances/s | {cluster:.1f} | |",
        f"| cluster / single-process | {cluster / single:.2f}x | ≥ 0.70x |",
    ]
    body = "\n".join(
        [
            f"Corpus: {len(files)} CT images, 64x64 16-bit (`write_demo_study`); Redis (AOF "
            "everysec) and PostgreSQL 15 (vault, index) on loopback; file archive and incoming "
            f"store; each worker a process with `--concurrency {THREADS}` (threads), its own "
            "`$DICOMVEIL_HOME`.",
            "",
            *rows,
            "",
            f"Command: `.venv/bin/python benchmarks/cluster_bench.py --images {args.images}`",
            "",
            _machine(),
        ]
    )
    print(body)
    if args.write_docs:
        write_section(SECTION, body)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
