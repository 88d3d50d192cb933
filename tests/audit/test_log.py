"""The audit log: chaining, verification, tamper detection, crash recovery, concurrency."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dicomveil.audit import AuditEvent, AuditLog
from dicomveil.audit.events import (
    access_denied,
    file_outcome,
    reidentification,
    run_finished,
    run_started,
    vault_key_operation,
)
from dicomveil.errors import AuditError
from tests.audit.workers import append_worker

SECRET = b"audit-secret-for-tests-0123456789"


class FixedClock:
    def now(self) -> datetime:
        return datetime(2025, 1, 31, 10, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    log = AuditLog(tmp_path / "audit", SECRET, clock=FixedClock())
    log.append_many(AuditEvent(f"test.event{i}", "alice", details={"i": i}) for i in range(1, 11))
    return log


def _lines(log: AuditLog) -> list[bytes]:
    return log.path.read_bytes().splitlines(keepends=True)


def _rewrite(log: AuditLog, lines: list[bytes]) -> None:
    log.path.write_bytes(b"".join(lines))


class TestFormat:
    def test_entries_are_chained_and_authenticated(self, log: AuditLog) -> None:
        entries = list(log.entries())
        assert [e.seq for e in entries] == list(range(1, 11))
        assert entries[0].prev == "0" * 64
        assert all(b.prev == a.hash for a, b in zip(entries, entries[1:], strict=False))
        first = json.loads(_lines(log)[0])
        assert list(first) == [
            "seq", "time", "event", "actor", "outcome", "details", "key_id", "prev", "mac",
        ]  # fmt: skip
        assert first["time"] == "2025-01-31T10:00:00.123456Z"
        assert first["key_id"] == log.key_id and re.fullmatch("[0-9a-f]{64}", first["mac"])
        assert log.path.stat().st_mode & 0o777 == 0o600
        assert str(log.verify()) == "audit log OK: 10 entries verified"

    def test_empty_and_missing_logs_verify(self, tmp_path: Path) -> None:
        log = AuditLog(tmp_path / "nothing", SECRET)
        assert log.verify().ok and log.verify().entries == 0
        assert list(log.entries()) == [] and log.append_many([]) == []
        assert not AuditLog.written_in(tmp_path / "nothing")

    def test_open_uses_home_and_creates_the_key(self, tmp_path: Path) -> None:
        env = {"DICOMVEIL_HOME": str(tmp_path)}
        log = AuditLog.open(environ=env)
        log.append(AuditEvent("test", "alice"))
        assert log.path == tmp_path / "audit" / "audit.jsonl"
        assert (tmp_path.with_name(tmp_path.name + ".keys") / "audit.key").exists()
        assert not (tmp_path / "keys" / "audit.key").exists()  # not beside the log
        assert AuditLog.open(environ=env).verify().ok


def _edit(lines: list[bytes]) -> list[bytes]:
    lines[4] = lines[4].replace(b'"actor":"alice"', b'"actor":"mallory"')
    return lines


def _delete(lines: list[bytes]) -> list[bytes]:
    del lines[4]
    return lines


def _insert_forged(lines: list[bytes]) -> list[bytes]:
    forged = json.loads(lines[4])
    forged["event"] = "forged"
    lines.insert(4, json.dumps(forged).encode() + b"\n")
    return lines


def _insert_replayed(lines: list[bytes]) -> list[bytes]:
    lines.insert(4, lines[1])
    return lines


def _swap(lines: list[bytes]) -> list[bytes]:
    lines[4], lines[5] = lines[5], lines[4]
    return lines


def _truncate(lines: list[bytes]) -> list[bytes]:
    return [*lines[:4], lines[4][:40]]


def _drop_last(lines: list[bytes]) -> list[bytes]:
    return lines[:-1]


def _garbage(lines: list[bytes]) -> list[bytes]:
    lines[4] = b"this is not json\n"
    return lines


@pytest.mark.parametrize(
    ("tamper", "seq", "line", "reason"),
    [
        (_edit, 5, 5, "MAC does not verify"),
        (_delete, 5, 5, "missing: found entry 6"),
        (_insert_forged, 5, 5, "MAC does not verify"),
        (_insert_replayed, 5, 5, "found entry 2 again"),
        (_swap, 5, 5, "missing: found entry 6"),
        (_truncate, 5, 5, "torn last line"),
        (_drop_last, 10, 10, "removed from the end"),
        (_garbage, 5, 5, "not a valid audit entry"),
    ],
)
def test_tampering_is_detected_at_the_first_bad_entry(
    log: AuditLog, tamper, seq: int, line: int, reason: str
) -> None:
    _rewrite(log, tamper(_lines(log)))
    result = log.verify()
    assert not result.ok
    assert (result.first_bad_seq, result.first_bad_line) == (seq, line), str(result)
    assert reason in str(result) and f"entry {seq} (line {line})" in str(result)
    assert result.entries == seq - 1


def test_another_key_does_not_verify(log: AuditLog) -> None:
    result = AuditLog(log.directory, b"some-other-audit-secret-000000").verify()
    assert (result.ok, result.first_bad_seq) == (False, 1)
    assert "authenticated by audit key" in str(result)


def test_forged_head_is_detected(log: AuditLog) -> None:
    head = json.loads(log.head_path.read_bytes())
    head["seq"] = 3
    log.head_path.write_text(json.dumps(head))
    result = log.verify()
    assert not result.ok and "head file" in str(result)


class TestCrashRecovery:
    def test_torn_last_line_is_reported_then_repaired(self, log: AuditLog) -> None:
        torn = b'{"seq":11,"time":"2025-01-31T10:00:00.1234'
        with log.path.open("ab") as handle:
            handle.write(torn)  # a crash mid-write
        result = log.verify()
        assert (result.ok, result.first_bad_seq, result.entries) == (False, 11, 10)
        assert "torn last line" in str(result)
        assert len(list(log.entries())) == 10  # earlier entries still readable
        entry = log.append(AuditEvent("test.after", "alice"))
        assert entry.seq == 12
        assert log.verify().ok
        repair = list(log.entries())[10]
        assert (repair.seq, repair.event, repair.details["torn_bytes"]) == (
            11,
            "audit.repair",
            len(torn),
        )
        (kept,) = (log.directory / "torn").iterdir()
        assert kept.read_bytes() == torn and kept.name.endswith(".partial")

    def test_unreadable_last_entry_refuses_to_append(self, log: AuditLog) -> None:
        _rewrite(log, [*_lines(log)[:-1], b"garbage\n"])
        with pytest.raises(AuditError, match="unreadable"):
            log.append(AuditEvent("test", "alice"))
        _rewrite(log, [*_lines(log)[:-1], b"garbage\n", b"x\n"])
        with pytest.raises(AuditError, match="line 10 of the audit log"):
            list(log.entries())


class TestHeadWrite:
    """The head file is flushed while the log is, and published only after the log is."""

    @staticmethod
    def _name(fd: int) -> str:
        return Path(os.readlink(f"/proc/self/fd/{fd}")).name

    def test_head_is_flushed_while_the_log_is_flushed(
        self, log: AuditLog, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real_fsync = os.fsync
        head_flushed = threading.Event()
        seen_while_flushing_log: list[bool] = []

        def fsync(fd: int) -> None:
            name = self._name(fd)
            if name == "audit.head.tmp":
                head_flushed.set()
            elif name == "audit.jsonl":  # the log's flush waits for the head's to start
                seen_while_flushing_log.append(head_flushed.wait(timeout=2))
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        log.append(AuditEvent("test.concurrent", "alice"))
        assert seen_while_flushing_log == [True]
        assert log.verify().ok and json.loads(log.head_path.read_bytes())["seq"] == 11

    def test_head_is_replaced_only_after_the_log_is_flushed(
        self, log: AuditLog, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real_fsync, real_replace = os.fsync, os.replace
        steps: list[str] = []

        def fsync(fd: int) -> None:
            if self._name(fd) == "audit.jsonl":
                time.sleep(0.05)  # a slow disk: the head's thread finishes first
                steps.append("log flushed")
            real_fsync(fd)

        def replace(source: Any, target: Any) -> None:
            steps.append(f"replaced {Path(target).name}")
            real_replace(source, target)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        log.append(AuditEvent("test.order", "alice"))
        assert steps == ["log flushed", "replaced audit.head"]

    def test_head_is_written_in_turn_when_no_thread_can_start(
        self, log: AuditLog, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """At interpreter shutdown no new future may be scheduled: appends still work."""
        from concurrent.futures import ThreadPoolExecutor

        import dicomveil.audit.log as audit_log

        closed = ThreadPoolExecutor(1)
        closed.shutdown()
        monkeypatch.setattr(audit_log._head_writers, "get", lambda: closed)
        log.append(AuditEvent("test.at-exit", "alice"))
        assert log.verify().ok and json.loads(log.head_path.read_bytes())["seq"] == 11

    def test_failed_log_flush_leaves_the_head_behind(
        self, log: AuditLog, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real_fsync = os.fsync
        before = log.head_path.read_bytes()

        def fsync(fd: int) -> None:
            if self._name(fd) == "audit.jsonl":
                raise OSError(5, "Input/output error")
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        with pytest.raises(AuditError, match="cannot write"):
            log.append(AuditEvent("test.lost", "alice"))
        assert log.head_path.read_bytes() == before  # never ahead of what the log holds
        monkeypatch.undo()
        assert log.verify().ok  # a head behind the log is accepted


def test_event_builders_carry_only_what_they_are_given(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, SECRET)
    events = [
        run_started(
            actor="a", run_id="r1", policy="basic", options=["retain-uids"], pseudonym_key_id="k1"
        ),
        file_outcome(actor="a", run_id="r1", outcome="success", output_sha256="ab" * 32),
        file_outcome(actor="a", run_id="r1", outcome="failure", error="UnsupportedInputError"),
        run_finished(actor="a", run_id="r1", counts={"written": 1, "failed": 1}),
        reidentification(
            actor="b", purpose="p", kind="study", outcome="success", matches=1, pseudonym="S1"
        ),
        access_denied(actor="", action="reid.lookup", reason="no actor given"),
        vault_key_operation(
            actor="c", operation="rotate.end", key_id="k2", new_key_id="k3", rows=9
        ),
    ]
    log.append_many(events)
    entries = list(log.entries())
    assert [e.event for e in entries] == [
        "deid.run.start", "deid.file", "deid.file", "deid.run.end",
        "reid.lookup", "access.denied", "vault.key",
    ]  # fmt: skip
    assert entries[1].details == {"run_id": "r1", "output_sha256": "ab" * 32}
    assert entries[5].actor == "<unknown>" and entries[5].outcome == "denied"
    assert log.verify().ok


def test_four_processes_append_at_once(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        jobs = [pool.apply_async(append_worker, (str(directory), SECRET, w, 60)) for w in range(4)]
        assert [job.get(timeout=120) for job in jobs] == [60] * 4
    log = AuditLog(directory, SECRET)
    result = log.verify()
    assert result.ok and result.entries == 240, str(result)
    entries = list(log.entries())
    assert Counter(e.actor for e in entries) == {f"worker-{w}": 60 for w in range(4)}
    for w in range(4):
        numbers = [e.details["n"] for e in entries if e.actor == f"worker-{w}"]
        assert numbers == list(range(60))
