"""The audit chain in the shared database: one chain across processes, tamper evidence,
a PostgreSQL restart, and the CLI (``audit verify`` / ``export``) on it."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from dicomveil.audit import AuditEntry, AuditEvent, AuditLog
from dicomveil.audit.sql import SqlAuditLog
from dicomveil.errors import AuditError
from tests.state.conftest import OwnPostgres
from tests.state.workers import append_through_outage, append_worker

SECRET = b"s" * 32


def _log(url: str, tmp_path: Path) -> SqlAuditLog:
    return SqlAuditLog.connect(url, tmp_path / "audit", SECRET)


def _fill(log: SqlAuditLog, count: int) -> None:
    for n in range(count):
        log.append(AuditEvent("test.fill", "tester", details={"n": n}))


def _sql(url: str, statements: str) -> None:
    """Run ``;``-separated statements as an attacker with database access would."""
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in statements.split(";"):
            conn.execute(text(statement))
    engine.dispose()


def test_entries_are_the_file_log_format_and_verify(shared_db: str, tmp_path: Path) -> None:
    log = _log(shared_db, tmp_path)
    _fill(log, 5)
    entries = list(log.entries())
    assert [entry.seq for entry in entries] == [1, 2, 3, 4, 5]
    pairs = zip(entries, entries[1:], strict=False)
    assert all(entry.prev == before.hash for before, entry in pairs)
    assert str(log.verify()) == "audit log OK: 5 entries verified"
    newest = [AuditEntry.parse(line).seq for line in log.newest_lines()]
    assert newest == [5, 4, 3, 2, 1]  # the console's audit page reads these
    assert log.ready() and log.written()
    # Same key, same entries: the file log's verifier accepts the very same lines.
    folder = tmp_path / "file-audit"
    folder.mkdir()
    lines = [line for _, line in log._lines()]
    (folder / "audit.jsonl").write_bytes(b"".join(line + b"\n" for line in lines if line))
    assert AuditLog(folder, SECRET).verify().ok
    assert not (tmp_path / "audit").exists()  # nothing of the chain on this host
    log.close()


@pytest.mark.parametrize(
    ("statement", "bad_seq", "reason"),
    [
        (
            "UPDATE dicomveil_audit SET line = replace(line, 'tester', 'mallory') "
            "WHERE position = 3",
            3,
            "MAC does not verify",
        ),
        ("DELETE FROM dicomveil_audit WHERE position = 3", 3, "missing: found entry 4"),
        (
            "UPDATE dicomveil_audit SET position = 100 WHERE position = 2;"
            "UPDATE dicomveil_audit SET position = 2 WHERE position = 3;"
            "UPDATE dicomveil_audit SET position = 3 WHERE position = 100",
            2,
            "missing: found entry 3",
        ),
        ("DELETE FROM dicomveil_audit WHERE position = 5", 5, "removed from the end"),
        ("UPDATE dicomveil_audit_head SET seq = 4", 5, "head file is damaged"),
    ],
    ids=["edit", "delete", "reorder", "truncate", "head"],
)
def test_tampering_is_named(
    shared_db: str, tmp_path: Path, statement: str, bad_seq: int, reason: str
) -> None:
    log = _log(shared_db, tmp_path)
    _fill(log, 5)
    _sql(shared_db, statement)
    result = log.verify()
    assert not result.ok
    assert result.first_bad_seq == bad_seq, str(result)
    assert reason in str(result)
    log.close()


def test_concurrent_appends_from_processes_keep_one_chain(shared_db: str, tmp_path: Path) -> None:
    _log(shared_db, tmp_path).close()  # tables created once, before the race
    jobs = [(shared_db, SECRET, worker, 12) for worker in range(3)]
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        assert pool.starmap(append_worker, jobs) == [12] * 3
    log = _log(shared_db, tmp_path)
    result = log.verify()
    assert result.ok, str(result)
    assert result.entries == 36
    actors = [entry.actor for entry in log.entries()]
    assert sorted(set(actors)) == [f"worker-{w}" for w in range(3)]
    log.close()


def test_postgresql_restart_fails_closed_then_continues_one_chain(
    own_postgres: OwnPostgres, tmp_path: Path
) -> None:
    url = own_postgres.url
    log = _log(url, tmp_path)
    _fill(log, 3)
    context = multiprocessing.get_context("spawn")
    ready, results = context.Event(), context.Queue()
    worker = context.Process(target=append_through_outage, args=(url, SECRET, 3.0, ready, results))
    worker.start()
    try:
        assert ready.wait(30)
        time.sleep(0.5)
        own_postgres.stop()
        with pytest.raises(AuditError) as refused:
            log.append(AuditEvent("test.down", "tester"))
        assert "nothing was recorded" in str(refused.value)
        assert "postgres" not in str(refused.value).lower()  # no URL, host or password
        assert not log.ready()  # /readyz says so
        time.sleep(0.5)
        own_postgres.start()
        done, failed = results.get(timeout=60)
    finally:
        worker.join(30)
    assert done > 0 and failed > 0
    log.append(AuditEvent("test.after", "tester"))  # reconnects by itself
    assert log.ready()
    result = log.verify()
    assert result.ok, str(result)
    assert result.entries == 3 + done + 1  # every acknowledged append, nothing else
    log.close()


def test_cli_verify_and_export_on_the_shared_database(shared_db: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "DICOMVEIL_HOME": str(home), "DICOMVEIL_DATABASE_URL": shared_db}
    log = AuditLog.open(home, environ=env)
    assert isinstance(log, SqlAuditLog)
    log.append(AuditEvent("test.cli", "tester", details={"n": 1}))
    log.close()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "dicomveil", *args]
        return subprocess.run(
            command, check=False, env=env, capture_output=True, text=True, timeout=60
        )

    verified = run("audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "1 entries verified" in verified.stdout
    exported = run("audit", "export", "--format", "syslog")
    assert exported.returncode == 0, exported.stderr
    assert "test.cli" in exported.stdout
    _sql(shared_db, "UPDATE dicomveil_audit SET line = replace(line, 'tester', 'x')")
    broken = run("audit", "verify")
    assert broken.returncode == 1
    assert "entry 1" in broken.stderr
