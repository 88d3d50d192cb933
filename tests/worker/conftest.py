"""A cluster on loopback: a Redis broker, PostgreSQL (vault, index), shared object stores,
and ``dicomveil worker`` processes with their own ``$DICOMVEIL_HOME``s, as on separate hosts.

Nothing is mocked: the workers are real Celery workers (``-P solo``) started as
subprocesses; the broker keeps its messages across a restart (append-only file, fsync always:
how a durable Redis broker runs).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dicomveil.cluster.settings import ClusterSettings
from dicomveil.cluster.submit import Queue, Submitter
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.rules import compile_policy
from dicomveil.keystore import create_key_file
from dicomveil.profile.policy import Policy
from dicomveil.storage import open_store
from tests.conftest import PG_BIN, _as_postgres, create_postgres_database
from tests.support.servers import free_port, require, require_binary, start, stop, wait_tcp

VISIBILITY_TIMEOUT = 3
"""Seconds before a vanished worker's message is handed out again (tests only: short)."""


def aws_environment(endpoint: str) -> dict[str, str]:
    """The environment that points boto3 (S3, SQS) of a node at the moto server."""
    from tests.support.cloud import AWS_OPTIONS

    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": AWS_OPTIONS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": AWS_OPTIONS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": AWS_OPTIONS["region_name"],
    }


@dataclass
class RedisServer:
    """A redis-server that can be stopped and started again on the same port and data."""

    binary: str
    folder: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.folder),
        ]  # fmt: skip
        self.proc = start(cmd, self.folder / "redis.log")
        wait_tcp(self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def values(self) -> bytes:
        """Every key and value the broker holds, as bytes (to search for PHI)."""
        import redis

        client = redis.Redis(port=self.port)
        chunks: list[bytes] = []
        for key in client.scan_iter():
            chunks.append(key)
            kind = client.type(key)
            if kind == b"list":
                chunks.extend(client.lrange(key, 0, -1))
            elif kind == b"hash":
                for k, v in client.hgetall(key).items():
                    chunks.extend([k, v])
            elif kind == b"zset":
                chunks.extend(client.zrange(key, 0, -1))
            elif kind == b"set":
                chunks.extend(client.smembers(key))
            elif kind == b"string":
                chunks.append(client.get(key) or b"")
        client.close()
        return b"\n".join(chunks)

    def unacked(self) -> int:
        """Messages taken by a worker and not acknowledged yet."""
        import redis

        client = redis.Redis(port=self.port)
        try:
            return int(client.hlen("unacked"))
        finally:
            client.close()


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    require("celery (Python package)", __import__("importlib").util.find_spec("celery"))
    server = RedisServer(require_binary("redis-server"), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


RABBIT_BIN = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


@pytest.fixture
def rabbitmq_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A RabbitMQ node on loopback (its own epmd too, stopped afterwards)."""
    require_binary("rabbitmq-server", str(RABBIT_BIN))
    folder = tmp_path_factory.mktemp("rabbit")
    (folder / "enabled_plugins").write_text("[].\n")
    (folder / "rabbitmq.conf").write_text("loopback_users = none\n")
    port, dist, epmd = free_port(), free_port(), free_port()
    env = {
        "HOME": str(folder),
        "RABBITMQ_NODENAME": f"rabbit{port}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_EPMD_PORT": str(epmd),
        "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
        "RABBITMQ_LOG_BASE": str(folder / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq"),
    }
    proc = start([str(RABBIT_BIN)], folder / "rabbit.log", env)
    try:
        wait_tcp(port, timeout=60, proc=proc)
        yield f"amqp://guest:guest@127.0.0.1:{port}//"
    finally:
        stop(proc, timeout=20)
        epmd_bin = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
        subprocess.run([epmd_bin, "-port", str(epmd), "-kill"], check=False, capture_output=True)


@dataclass
class PostgresServer:
    """A PostgreSQL server of its own (the session's is shared: it must not go down)."""

    folder: Path
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"

    def _ctl(self, *args: str) -> None:
        cmd = [str(PG_BIN / "pg_ctl"), "-D", str(self.folder / "data"), "-w", *args]
        subprocess.run(_as_postgres(cmd), check=True, capture_output=True)

    def init(self) -> None:
        self.folder.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        initdb = [str(PG_BIN / "initdb"), "-D", str(self.folder / "data"), "-U", "postgres"]
        initdb += ["-A", "trust", "-E", "UTF8", "--no-sync"]
        subprocess.run(_as_postgres(initdb), check=True, capture_output=True)

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off"
        self._ctl("-l", str(self.folder / "log"), "-o", options, "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    require_binary("pg_ctl", str(PG_BIN / "pg_ctl"))
    import tempfile

    server = PostgresServer(Path(tempfile.mkdtemp(prefix="dicomveil-pg-")))  # postgres reads it
    server.init()
    server.start()
    try:
        yield server
    finally:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(server.folder / "data"), "-m",
                          "immediate", "-w", "stop"]),
            check=False, capture_output=True,
        )  # fmt: skip
        shutil.rmtree(server.folder, ignore_errors=True)


@dataclass
class Cluster:
    """Shared state of a cluster and its worker processes."""

    root: Path
    env: dict[str, str]
    config: Path
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def incoming_url(self) -> str:
        return self.env["DICOMVEIL_INCOMING_URL"]

    def start_worker(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        home = self.root / f"home-{name}"
        home.mkdir(exist_ok=True)
        cmd = [sys.executable, "-m", "dicomveil", "worker", "--config", str(self.config)]
        cmd += ["--verbose", *extra]
        proc = start(cmd, self.root / f"{name}.log", {**self.env, "DICOMVEIL_HOME": str(home)})
        self.workers[name] = proc
        return proc

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker's process group (no warm shutdown, no acknowledgement)."""
        proc = self.workers.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def logs(self) -> bytes:
        return b"".join(p.read_bytes() for p in self.root.glob("*.log"))

    def homes(self) -> list[Path]:
        """The workers' state folders (not the ``<home>.keys`` folders beside them)."""
        return sorted(p for p in self.root.glob("home-*") if p.suffix != ".keys")

    def submitter(self, queue: Queue) -> Submitter:
        secret = (self.root / "pseudonym.key").read_text().strip().encode()
        return Submitter(
            queue,
            open_store(self.incoming_url),
            keys=PseudonymKeys(secret),
            compiled=compile_policy(Policy()),
        )

    def wait(self, done: Callable[[], bool], timeout: float = 60.0, poll: float = 0.2) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.workers.items():
                if proc.poll() is not None:
                    log = (self.root / f"{name}.log").read_text(errors="replace")[-3000:]
                    raise AssertionError(f"worker {name} exited ({proc.returncode}):\n{log}")
            if done():
                return
            time.sleep(poll)
        raise AssertionError("the cluster did not finish in time:\n" + self.logs()[-4000:].decode())


@pytest.fixture
def cluster(tmp_path: Path, redis_server: RedisServer, postgres_url: str) -> Iterator[Cluster]:
    """Two stores (incoming, archive) and two databases (vault, index) every worker shares."""
    create_key_file(tmp_path / "pseudonym.key")
    create_key_file(tmp_path / "vault.key")
    config = tmp_path / "cluster.toml"
    config.write_text(
        f"[cluster]\nvisibility_timeout = {VISIBILITY_TIMEOUT}\nmax_retries = 6\n",
        encoding="utf-8",
    )
    env = {
        "DICOMVEIL_QUEUE": redis_server.url,
        "DICOMVEIL_INCOMING_URL": f"file://{tmp_path / 'incoming'}",
        "DICOMVEIL_STORAGE_URL": f"file://{tmp_path / 'archive'}",
        "DICOMVEIL_INDEX_URL": create_postgres_database(postgres_url, "index"),
        "DICOMVEIL_VAULT_URL": create_postgres_database(postgres_url, "vault"),
        "DICOMVEIL_KEY_FILE": str(tmp_path / "pseudonym.key"),
        "DICOMVEIL_VAULT_KEY_FILE": str(tmp_path / "vault.key"),
    }
    made = Cluster(tmp_path, env, config)
    try:
        yield made
    finally:
        for proc in made.workers.values():
            stop(proc)


@pytest.fixture
def queue(cluster: Cluster) -> Iterator[Queue]:
    sender = Queue(ClusterSettings.load(cluster.config, environ=cluster.env))
    try:
        yield sender
    finally:
        sender.close()
