"""``dicomveil audit verify`` and ``dicomveil audit export`` through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomveil.audit import AuditEvent, AuditLog
from tests.vault.cliapp import isolate, run


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    isolate(monkeypatch, tmp_path)
    log = AuditLog.open()
    log.append_many(AuditEvent("test.event", "alice", details={"i": i}) for i in range(6))
    return tmp_path


def test_verify_ok(home: Path) -> None:
    result = run("audit", "verify")
    assert result.exit_code == 0 and "6 entries verified" in result.stdout


def test_verify_names_the_first_bad_entry(home: Path) -> None:
    path = home / "audit" / "audit.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2], lines[3] = lines[3], lines[2]
    path.write_bytes(b"".join(lines))
    result = run("audit", "verify")
    assert result.exit_code == 1
    assert "entry 3 (line 3)" in result.stderr


def test_verify_without_a_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(monkeypatch, tmp_path)
    result = run("audit", "verify")
    assert result.exit_code == 0 and "nothing to verify" in result.stdout
    assert not (tmp_path / "keys").exists()


@pytest.mark.parametrize(("fmt", "start"), [("syslog", "<110>1 "), ("atna", "<AuditMessage>")])
def test_export(home: Path, fmt: str, start: str) -> None:
    result = run("audit", "export", "--format", fmt, "--hostname", "gw")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 6 and all(line.startswith(start) for line in lines)
    target = home / f"export.{fmt}"
    assert run("audit", "export", "--format", fmt, "--out", target).exit_code == 0
    assert len(target.read_text().splitlines()) == 6


def test_export_rejects_unknown_format(home: Path) -> None:
    assert run("audit", "export", "--format", "csv").exit_code == 2
