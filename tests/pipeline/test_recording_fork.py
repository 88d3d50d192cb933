"""A process forked after a recording records again (pipeline/recording.py's threads).

The vault write of a batch runs on a recording thread while the audit log is written. A
child forked after the parent had started those threads inherited the executor without its
threads: the child's first recording handed the vault write to a thread that did not exist
and waited for ever (it hung a test run). The child now starts its own threads.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from dicomveil.audit import AuditLog
from dicomveil.engine.keys import PseudonymKeys
from dicomveil.engine.rules import compile_policy
from dicomveil.pipeline.files import deidentify_file
from dicomveil.pipeline.recording import RunRecorder, shutdown_recorders
from dicomveil.profile.policy import Policy
from dicomveil.vault import open_vault
from tests.support.processes import wait_child

KEYS = PseudonymKeys(b"fork-test-key-0123456789abcdef0123")


def _record(home: Path, name: str) -> int:
    """De-identify a pydicom test file and record it (vault and audit log written at once,
    so the vault's write goes to a recording thread); the number of records written."""
    policy = Policy()
    outcome = deidentify_file(
        Path(get_testdata_file("CT_small.dcm")), home / name, compile_policy(policy), KEYS
    )
    assert outcome.status == "ok"
    audit = AuditLog.open(home)
    try:
        with open_vault(f"sqlite:///{home / 'vault.db'}") as vault:
            recorder = RunRecorder(
                vault, audit, run_id=name, actor="test", policy=policy, pseudonym_key_id=KEYS.key_id
            )
            recorder.add(outcome)
            recorder.finish({"ok": 1})
    finally:
        audit.close()
    return recorder.recorded


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_child_forked_after_a_recording_records_again_without_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DICOMVEIL_HOME", str(tmp_path))
    assert _record(tmp_path, "parent") == 1  # the parent's recording threads are running
    pid = os.fork()
    if pid == 0:  # the child: record, then leave without running the parent's cleanup
        code = 1
        try:
            code = 0 if _record(tmp_path, "child") == 1 else 2
            shutdown_recorders()
        finally:
            os._exit(code)
    assert wait_child(pid, 30) == 0, "the forked child hung (or failed) recording"
    assert _record(tmp_path, "parent-again") == 1  # the parent's own threads still work
    shutdown_recorders()
    assert _record(tmp_path, "after-shutdown") == 1  # new threads on the next write
