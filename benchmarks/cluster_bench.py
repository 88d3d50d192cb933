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
import signal
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

from benchmarks.bench_run import publish  # noqa: E402
from benchmarks.reporting import cpu_model  # noqa: E402

SECTION = "## Cluster mode (issue 15)"
E2E_SECTION = "## Cluster mode: end-to-end latency (issue 15)"
LARGE_SECTION = "## Cluster mode: a large instance in flight (issue 15)"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
KEY = "benchmark-pseudonym-key-0123456789abcdef"
THREADS = 8
"""Tasks at once per worker process (``--concurrency``; threads sharing one runtime)."""
INCOMING = {"s3": "moto S3 server (incoming store)", "folder": "incoming store in a folder"}
STALL_SECONDS = 120.0
"""A drain with no instance indexed for this long failed (the logs stay for a look)."""
CODE = REPO
"""The tree whose ``src`` the workers run (``--code``: compare another checkout's workers
on the same harness)."""


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class Services:
    """redis-server and PostgreSQL for the run."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.redis_port, self.pg_port = free_port(), free_port()
        self.pg = Path(tempfile.mkdtemp(prefix="dicomveil-bench-pg-"))
        self.redis: subprocess.Popen[bytes] | None = None
        self.moto: subprocess.Popen[bytes] | None = None
        self.s3_endpoint: str | None = None

    def start(self, *, object_store: bool = False) -> None:
        """Start Redis and PostgreSQL; with ``object_store``, a moto S3 server too (the
        incoming store of :func:`_env`)."""
        if object_store:
            from benchmarks.batch_bench import CREDENTIALS, start_moto

            os.environ.update(CREDENTIALS)  # this process submits to it too
            self.moto, self.s3_endpoint = start_moto(self.root)
            os.environ["AWS_ENDPOINT_URL"] = self.s3_endpoint
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

    def pids(self) -> dict[str, list[int]]:
        """The processes of each shared service (PostgreSQL: its postmaster)."""
        assert self.redis is not None
        postmaster = int((self.pg / "data" / "postmaster.pid").read_text().split()[0])
        pids = {"postgres": [postmaster], "redis": [self.redis.pid]}
        pids["object store"] = [self.moto.pid] if self.moto is not None else []
        return pids

    def database(self, name: str) -> str:
        import psycopg

        url = f"postgresql://postgres@127.0.0.1:{self.pg_port}/postgres"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.pg_port}/{name}"

    def stop(self) -> None:
        for proc in (self.redis, self.moto):
            if proc is not None:
                stop(proc)
        ctl = [str(PG_BIN / "pg_ctl"), "-D", str(self.pg / "data"), "-m", "immediate", "stop"]
        subprocess.run(_as_postgres(ctl), check=False, capture_output=True)
        shutil.rmtree(self.pg, ignore_errors=True)


def _env(
    services: Services, root: Path, tag: str, *, shared_database: bool = False
) -> dict[str, str]:
    """A node's environment. ``shared_database``: every shared table (index, vault, audit
    chain, tokens) in one PostgreSQL database (``DICOMVEIL_DATABASE_URL``), as a cluster
    runs; otherwise index and vault databases and a per-node audit file. The incoming store
    is the moto S3 server when one runs, else a folder."""
    env = {
        "DICOMVEIL_QUEUE": f"redis://127.0.0.1:{services.redis_port}/0",
        "DICOMVEIL_INCOMING_URL": f"file://{root / f'incoming-{tag}'}",
        "DICOMVEIL_STORAGE_URL": f"file://{root / f'archive-{tag}'}",
        "DICOMVEIL_KEY": KEY,
        "DICOMVEIL_VAULT_KEY": KEY + "-vault",
        "PYTHONPATH": f"{CODE / 'src'}{os.pathsep}{REPO}",
    }
    if services.s3_endpoint is not None:
        from benchmarks.batch_bench import BUCKET, CREDENTIALS

        env |= {**CREDENTIALS, "AWS_ENDPOINT_URL": services.s3_endpoint}
        env["DICOMVEIL_INCOMING_URL"] = f"s3://{BUCKET}/incoming-{tag}"
    if shared_database:
        env["DICOMVEIL_DATABASE_URL"] = services.database(f"cluster_{tag}")
    else:
        env["DICOMVEIL_INDEX_URL"] = services.database(f"index_{tag}")
        env["DICOMVEIL_VAULT_URL"] = services.database(f"vault_{tag}")
    return env


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
    """One drain of a pre-filled queue by ``workers`` worker processes."""

    workers: int
    rate: float
    """Instances/s from the first instance indexed to the last."""
    cpu_ms: dict[str, float]
    """CPU ms per instance by process group (:data:`GROUPS`) over the drain."""
    idle_cores: float
    """The machine's idle CPU over the drain, in cores (0: other jobs took the rest)."""
    calls: int
    """Ingest calls the workers made (instances per call: group commit, worker.batching)."""

    @property
    def shared_ms(self) -> float:
        """CPU ms per instance of what every worker shares (database, broker, store)."""
        return sum(v for k, v in self.cpu_ms.items() if k != "worker")

    def ideal(self, cores: int) -> float:
        """Instances/s this drain's CPU costs allow on ``cores`` idle cores: each worker
        process uses at most one core (one interpreter), and every process shares them."""
        per_worker = 1000 / self.cpu_ms["worker"]
        return min(
            self.workers * per_worker, cores * 1000 / (self.cpu_ms["worker"] + self.shared_ms)
        )


GROUPS = ("worker", "postgres", "redis", "object store")
"""The processes a drain's CPU is reported for (``object store``: the moto S3 server)."""


def _ticks(pid: int, *, reaped: bool = True) -> int:
    """CPU clock ticks (user + system) of a process, and of its children that ended."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11 : 15 if reaped else 13])


def _tree_cpu(roots: list[int]) -> float:
    """CPU seconds of ``roots`` and every live descendant (ended ones are in their parent's
    reaped ticks): PostgreSQL's backends, a worker's children."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # a process that ended meanwhile
    ticks, todo = 0, list(roots)
    while todo:
        pid = todo.pop()
        try:
            ticks += _ticks(pid)
        except OSError:
            continue
        todo += [child for child, parent in parents.items() if parent == pid]
    return ticks / os.sysconf("SC_CLK_TCK")


def _idle_seconds() -> float:
    """The machine's idle CPU seconds so far (all cores; idle + iowait), from ``/proc/stat``."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return (int(fields[3]) + int(fields[4])) / os.sysconf("SC_CLK_TCK")


class Counter:
    """Instances indexed so far, on one connection (a poll must not cost a backend each)."""

    def __init__(self, database_url: str) -> None:
        from dicomveil.database import store_url
        from dicomveil.index import open_index

        self.index = open_index(store_url(database_url, "index"))

    def __call__(self) -> int:
        return self.index.counts().instances

    def close(self) -> None:
        self.index.close()


def _worker(env: dict[str, str], root: Path, name: str) -> subprocess.Popen[bytes]:
    home = root / f"home-{name}"
    home.mkdir()
    cmd = [sys.executable, "-m", "dicomveil", "worker", "--queues", "routine"]
    cmd += ["--concurrency", str(THREADS)]
    return start(cmd, root / f"{name}.log", {**env, "DICOMVEIL_HOME": str(home)})


def _calls(url: str) -> int:
    """Ingest calls made: one audit run each (started entries in the shared chain)."""
    from sqlalchemy import create_engine, text

    from dicomveil.audit.events import DEID_RUN_START

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            query = text("SELECT count(*) FROM dicomveil_audit WHERE line LIKE :event")
            return int(conn.execute(query, {"event": f'%"{DEID_RUN_START}"%'}).scalar_one())
    finally:
        engine.dispose()


def drain(services: Services, root: Path, files: list[Path], workers: int) -> Drain:
    """Fill the queue with ``files``, then start ``workers`` workers and time the drain."""
    from dicomveil.pipeline.ingest import Origin

    tag = f"w{workers}"
    env = _env(services, root, tag, shared_database=True)
    _submitter(env).ingest(files, Origin(entry="stow", actor="bench"))  # type: ignore[attr-defined]
    count = Counter(env["DICOMVEIL_DATABASE_URL"])
    procs = [_worker(env, root, f"{tag}-{n}") for n in range(workers)]
    groups = {"worker": [p.pid for p in procs], **services.pids()}
    try:
        while count() == 0:
            time.sleep(0.02)
        cpu = {name: _tree_cpu(pids) for name, pids in groups.items()}
        idle, first = _idle_seconds(), time.monotonic()
        last, moved = 0, time.monotonic()
        while (done := count()) < len(files):
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a worker exited; see {root}")
            if done != last:
                last, moved = done, time.monotonic()
            elif time.monotonic() - moved > STALL_SECONDS:
                raise RuntimeError(f"{len(files) - done} instances not indexed; see {root}")
            time.sleep(0.1)
        wall = time.monotonic() - first
        per = {n: (_tree_cpu(p) - cpu[n]) * 1000 / (done - 1) for n, p in groups.items()}
        idle_cores = (_idle_seconds() - idle) / wall
    finally:
        count.close()
        for proc in procs:
            stop(proc)
    calls = _calls(env["DICOMVEIL_DATABASE_URL"])
    return Drain(workers, (done - 1) / wall, per, idle_cores, calls)


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
    publish(
        E2E_SECTION,
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
        ],
        write_docs=args.write_docs,
        command=command,
        machine=_machine(),
    )
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
    publish(
        LARGE_SECTION,
        [
            "One `dicomveil worker --concurrency 2` with the default queues (so `large` runs "
            "in its own child process, `--large-concurrency 1`) on Redis, PostgreSQL 15, file "
            "archive and incoming store (`large_bytes` 256 MiB). A STAT study of 64x64 CT "
            "images is queued alone, then again while a synthetic multi-frame CT instance "
            "(uncompressed, written frame by frame) is being ingested; each time from queued "
            "to every instance indexed.",
            "",
            *rows,
        ],
        write_docs=args.write_docs,
        command=command,
        machine=_machine(),
    )
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


def _machine(before: tuple[float, float, float] | None = None) -> str:
    """The machine line; ``before``: the load average at the start of the run too."""
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    start = f"at the start {', '.join(f'{v:.1f}' for v in before)}; " if before else ""
    return (
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, {platform.platform()}, Python "
        f"{platform.python_version()}; load average {start}at the end {load} (shared machine)."
    )


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers in `finally`
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument(
        "--incoming", choices=("s3", "folder"), default="s3",
        help="incoming store: a moto S3 server (its CPU is reported) or a folder",
    )  # fmt: skip
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
    parser.add_argument(
        "--code", type=Path, default=REPO,
        help="checkout whose src/ the workers run (compare old and new code on one harness)",
    )  # fmt: skip
    parser.add_argument(
        "--drains-only", action="store_true",
        help="only the 1- and 2-worker drains (no queue overhead, no gateway ingest call)",
    )  # fmt: skip
    args = parser.parse_args()
    global CODE  # noqa: PLW0603 - one setting for the whole run
    CODE = args.code.resolve()
    if args.e2e:
        end_to_end(args)
        return
    if args.large:
        large_in_flight(args)
        return
    scaling(args)


def scaling(args: argparse.Namespace) -> None:
    """The default run: 1 against 2 workers, queue overhead, gateway ingest call."""
    from dicomveil.demo import write_demo_study

    root = Path(tempfile.mkdtemp(prefix="dicomveil-cluster-bench-"))
    services = Services(root)
    load = os.getloadavg()
    try:
        services.start(object_store=args.incoming == "s3")
        per_series = max(1, args.images // 4)
        files = write_demo_study(
            root / "corpus", patients=2, images_per_series=per_series, rows=args.matrix,
            columns=args.matrix,
        )[: args.images]  # fmt: skip
        drains = [drain(services, root, files, workers) for workers in (1, 2)]
        if not args.drains_only:
            send_ms, accept_ms = queue_overhead(services, root, files)
            single, cluster = ingest_calls(services, root, files)
    finally:
        services.stop()
    one, two = drains
    cores = os.cpu_count() or 1
    rows = [
        "| measure | 1 worker | 2 workers | target |",
        "|---|---:|---:|---|",
        f"| instances/s (queue pre-filled) | {one.rate:.1f} | {two.rate:.1f} | |",
        f"| **2 workers / 1 worker** | | **{two.rate / one.rate:.2f}x** | ≥ 1.8x |",
        *(
            f"| CPU ms per instance: {name} | {one.cpu_ms[name]:.2f} | {two.cpu_ms[name]:.2f} | |"
            for name in GROUPS
        ),
        f"| instances per ingest call (group commit) | {len(files) / max(1, one.calls):.1f} "
        f"| {len(files) / max(1, two.calls):.1f} | |",
        f"| idle CPU of the machine while draining, cores of {cores} | {one.idle_cores:.2f} "
        f"| {two.idle_cores:.2f} | |",
        f"| ideal instances/s on {cores} idle cores, from the CPU rows | "
        f"{one.ideal(cores):.1f} | {two.ideal(cores):.1f} | |",
        f"| ideal 2 workers / 1 worker on this machine | | "
        f"{two.ideal(cores) / one.ideal(cores):.2f}x | |",
    ]
    if not args.drains_only:
        rows += [
            f"| queue send, CPU ms/instance | {send_ms:.2f} | | ≤ 2 ms |",
            f"| cluster accept (hash + store + send), CPU ms/instance | {accept_ms:.2f} | | |",
            f"| gateway ingest call, single-process / cluster mode, instances/s | {single:.1f} "
            f"| {cluster:.1f} | |",
            f"| cluster / single-process | | {cluster / single:.2f}x | ≥ 0.70x |",
        ]
    intro = (
        f"Corpus: {len(files)} CT images, {args.matrix}x{args.matrix} 16-bit "
        "(`write_demo_study`), queued before "
        "the workers start (the gateway does not compete). Redis (AOF everysec), "
        "PostgreSQL 15 (every shared table: index, vault, audit chain; "
        f"`DICOMVEIL_DATABASE_URL`), {INCOMING[args.incoming]}, file archive, all on "
        f"loopback; each worker a process with `--concurrency {THREADS}` (threads, one "
        "runtime; their tasks share ingest calls), its own `$DICOMVEIL_HOME`. CPU per "
        "process group from `/proc` over the drain (PostgreSQL: postmaster and "
        "backends). The ideal rows: a worker process uses at most one core, and the "
        "workers share the machine's cores with PostgreSQL, Redis and the object store at "
        "the measured CPU per instance."
    )
    publish(
        SECTION,
        [intro, "", *rows],
        write_docs=args.write_docs,
        command=(
            ".venv/bin/python benchmarks/cluster_bench.py --images "
            f"{args.images} --incoming {args.incoming} --matrix {args.matrix}"
            + (" --drains-only" if args.drains_only else "")
        ),
        machine=_machine(load),
    )
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
