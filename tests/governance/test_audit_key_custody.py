"""Audit key custody: on a new install the audit key is not in the state folder, so a copy of
that folder (log included) can neither re-authenticate an edited log nor have it verify."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dicomveil.audit import AuditEvent, AuditLog
from dicomveil.cli.main import main
from dicomveil.keystore import load_key


def test_a_copy_of_the_state_folder_cannot_forge_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "srv" / "home"
    monkeypatch.setenv("DICOMVEIL_HOME", str(home))
    for name in ("DICOMVEIL_AUDIT_KEY", "DICOMVEIL_AUDIT_KEY_FILE", "DICOMVEIL_KEYS_HOME"):
        monkeypatch.delenv(name, raising=False)
    log = AuditLog.open()
    for n in range(3):
        log.append(AuditEvent("reid.lookup", "token:abc", "success", {"n": n}))
    secret = load_key("audit", create=False).secret
    assert main(["audit", "verify"]) == 0

    copy = tmp_path / "stolen" / "home"
    shutil.copytree(home, copy)
    assert not any(secret in p.read_bytes() for p in copy.rglob("*") if p.is_file())
    lines = (copy / "audit" / "audit.jsonl").read_bytes().splitlines(keepends=True)
    edited = json.loads(lines[1])
    edited["actor"] = "token:someone-else"
    lines[1] = json.dumps(edited, separators=(",", ":")).encode() + b"\n"
    (copy / "audit" / "audit.jsonl").write_bytes(b"".join(lines))

    monkeypatch.setenv("DICOMVEIL_HOME", str(copy))
    capsys.readouterr()
    assert main(["audit", "verify"]) != 0  # no key in the copy: nothing verifies
    assert "audit key" in capsys.readouterr().err
    assert not (copy / "keys").exists() and not copy.with_name("home.keys").exists()
    with pytest.raises(Exception, match="audit key"):
        load_key("audit", create=False)
    # Whoever holds the real key sees the edit.
    result = AuditLog(copy / "audit", secret).verify()
    assert not result.ok and result.first_bad_seq == 2
