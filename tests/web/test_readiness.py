"""``/readyz`` against real backing services (issue #15): a Redis broker started and stopped,
a PostgreSQL index and vault stopped. ``/healthz`` stays liveness only; no URL, port or
message in any answer."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dicomveil.readiness import Check, broker_check, run_checks
from dicomveil.web import Settings, create_app
from dicomveil.web.services import Services
from tests.conftest import PG_BIN, _as_postgres, create_postgres_database
from tests.support.servers import free_port, require_binary, start, stop, wait_tcp

pytestmark = pytest.mark.anyio


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[tuple[int, object]]:
    """A redis-server on a free port (no persistence); yields its port and process."""
    binary = require_binary("redis-server")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
               "no", "--dir", str(tmp_path)]  # fmt: skip
    proc = start(command, tmp_path / "redis.log")
    try:
        wait_tcp(port, proc=proc)
        yield port, proc
    finally:
        stop(proc)


async def test_readyz_follows_a_real_redis_broker(
    client: httpx.AsyncClient, services: Services, redis_port: tuple[int, object]
) -> None:
    port, proc = redis_port
    services.readiness.append(broker_check(f"redis://127.0.0.1:{port}/0", timeout=0.5))

    answer = await client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json()["checks"]["broker"] is True

    stop(proc)  # type: ignore[arg-type]
    began = time.monotonic()
    answer = await client.get("/readyz")
    assert time.monotonic() - began < 3.0  # a cheap ping with a short timeout
    assert answer.status_code == 503
    body = answer.json()
    assert body == {
        "status": "not ready",
        "checks": {"index": True, "vault": True, "storage": True, "audit": True, "broker": False},
    }
    assert str(port) not in answer.text and "redis" not in answer.text
    assert (await client.get("/healthz")).status_code == 200


def test_a_hung_probe_fails_within_the_timeout() -> None:
    began = time.monotonic()
    found = run_checks(
        [Check("slow", lambda: time.sleep(3)), Check("fast", lambda: None)], timeout=0.3
    )
    assert found == {"slow": False, "fast": True}
    assert time.monotonic() - began < 1.0


def test_an_unreachable_amqp_broker_fails_fast() -> None:
    pytest.importorskip("kombu")  # the worker extra; CI installs it
    check = broker_check(f"amqp://guest:guest@127.0.0.1:{free_port()}//", timeout=0.5)
    began = time.monotonic()
    assert run_checks([check], timeout=2.0) == {"broker": False}
    assert time.monotonic() - began < 2.5


@pytest.fixture
def own_postgres() -> Iterator[tuple[str, list[str]]]:
    """A PostgreSQL of this test's own (it is stopped mid-test); yields its base URL and the
    command that stops it."""
    initdb = require_binary("initdb", str(PG_BIN / "initdb"))
    pg_ctl = require_binary("pg_ctl", str(PG_BIN / "pg_ctl"))
    root = Path(tempfile.mkdtemp(prefix="dicomveil-pg-ready-"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    halt = _as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"])
    try:
        init = [initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"]
        subprocess.run(_as_postgres(init), check=True, capture_output=True)
        options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off"
        run = [pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-o", options, "start"]
        subprocess.run(_as_postgres(run), check=True, capture_output=True)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}", halt
    finally:
        subprocess.run(halt, check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.server
async def test_readyz_reports_a_stopped_postgresql(
    own_postgres: tuple[str, list[str]], home: Path, key_file: Path
) -> None:
    base, halt = own_postgres
    settings = Settings(
        home=home,
        key_file=key_file,
        index_url=create_postgres_database(base, "index"),
        vault_url=create_postgres_database(base, "vault"),
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            assert (await client.get("/readyz")).status_code == 200

            subprocess.run(halt, check=True, capture_output=True)
            answer = await client.get("/readyz")

            assert answer.status_code == 503
            checks = answer.json()["checks"]
            assert checks == {"index": False, "vault": False, "storage": True, "audit": True}
            assert "postgres" not in answer.text and "127.0.0.1" not in answer.text
            assert (await client.get("/healthz")).status_code == 200
    finally:
        app.state.services.close()
