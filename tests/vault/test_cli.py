"""``dicomveil reidentify``, ``vault stats`` and ``keys rotate-vault`` through the CLI."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from pydicom import dcmread

from dicomveil.audit import AuditLog
from dicomveil.keystore import create_key_file, load_key
from dicomveil.vault import open_vault, rotate_vault_key
from tests.vault.cliapp import isolate, run
from tests.vault.corpus import make_records
from tests.vault.sr import returned_sr

RECORDS = make_records(patients=2, studies=2, series=1, instances=2)
PSEUDO = RECORDS[0].pseudonymous
ORIG = RECORDS[0].original


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    isolate(monkeypatch, tmp_path)
    with open_vault() as vault:
        vault.record(RECORDS, "run-1")
    AuditLog.open()  # creates the audit key, so no notice interleaves with errors
    return tmp_path


def _audit_events(home: Path) -> list[tuple[str, str]]:
    log = AuditLog.open(home)
    return [(e.event, e.outcome) for e in log.entries()]


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


class TestReidentify:
    def test_prints_the_original_identifiers(self, home: Path) -> None:
        result = run(
            "reidentify", "--study", PSEUDO.study_id, "--purpose", "report", "--actor", "alice"
        )
        assert result.exit_code == 0, result.stderr
        assert f"PatientID: {ORIG.patient_id}" in result.stdout
        assert f"AccessionNumber: {ORIG.accession_number}" in result.stdout
        assert _audit_events(home) == [("reid.lookup", "success")]

    def test_json_is_one_object(self, home: Path) -> None:
        result = run("reidentify", "--patient", PSEUDO.patient_id, "--purpose", "report", "--json")
        assert result.exit_code == 0
        answer = json.loads(result.stdout)
        assert answer["found"] is True and len(answer["studies"]) == 2
        assert answer["studies"][0]["original"]["PatientName"] == ORIG.patient_name
        assert answer["studies"][0]["pseudonymous"]["PatientID"] == PSEUDO.patient_id

    def test_not_found_exits_1(self, home: Path) -> None:
        result = run("reidentify", "--accession", "NOPE", "--purpose", "qa", "--json")
        assert result.exit_code == 1
        assert json.loads(result.stdout) == {
            "found": False,
            "query": {"accession": "NOPE"},
            "studies": [],
        }
        assert _audit_events(home) == [("reid.lookup", "not-found")]

    def test_refused_without_purpose(self, home: Path) -> None:
        result = run("reidentify", "--study", PSEUDO.study_id, "--json")
        assert result.exit_code == 2  # a usage error (still refused and audited)
        assert json.loads(result.stdout)["found"] is False
        assert "refused: no purpose" in _one_error_line(result.stderr)
        assert _audit_events(home) == [("access.denied", "denied")]

    def test_refused_without_the_vault_key(self, home: Path) -> None:
        (home / "keys" / "vault.key").unlink()
        result = run("reidentify", "--study", PSEUDO.study_id, "--purpose", "report")
        assert result.exit_code == 1
        assert "refused" in _one_error_line(result.stderr)
        assert not (home / "keys" / "vault.key").exists()
        assert _audit_events(home) == [("access.denied", "denied")]

    @pytest.mark.parametrize(
        "args",
        [
            ("--purpose", "x"),
            ("--study", "a", "--patient", "b", "--purpose", "x"),
            ("--study", "a", "--dicom", "f.dcm", "--out", "o.dcm"),
            ("--dicom", "f.dcm", "--purpose", "x"),
        ],
    )
    def test_usage_errors_exit_2(self, home: Path, args: tuple[str, ...]) -> None:
        assert run("reidentify", *args).exit_code == 2

    def test_returned_dicom_object(self, home: Path) -> None:
        study = [
            r for r in RECORDS if r.pseudonymous.study_instance_uid == PSEUDO.study_instance_uid
        ]
        source, target = home / "report.dcm", home / "report-reid.dcm"
        returned_sr(study).save_as(source, enforce_file_format=True)
        result = run("reidentify", "--dicom", source, "--out", target, "--purpose", "import")
        assert result.exit_code == 0, result.stderr
        copy = dcmread(target)
        assert (copy.PatientID, copy.StudyInstanceUID) == (ORIG.patient_id, ORIG.study_instance_uid)
        assert _audit_events(home) == [("reid.dataset", "success")]
        (home / "junk.dcm").write_bytes(b"not dicom")
        bad = run("reidentify", "--dicom", home / "junk.dcm", "--out", target, "--purpose", "x")
        assert bad.exit_code == 1 and "not readable DICOM" in _one_error_line(bad.stderr)


class TestVaultCommands:
    def test_stats(self, home: Path) -> None:
        result = run("vault", "stats")
        assert result.exit_code == 0
        assert "studies:    4" in result.stdout and "instances:  8" in result.stdout
        stats = json.loads(run("vault", "stats", "--json").stdout)
        assert (stats["patients"], stats["rotating"]) == (2, False)

    def test_stats_without_a_vault(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        isolate(monkeypatch, tmp_path)
        result = run("vault", "stats")
        assert result.exit_code == 1 and "vault key" in _one_error_line(result.stderr)

    def test_rotate_vault_key(self, home: Path) -> None:
        old = load_key("vault", create=False)
        result = run("keys", "rotate-vault", "--batch-size", "3", "--actor", "admin")
        assert result.exit_code == 0, result.stderr
        new = load_key("vault", create=False)
        assert new.id != old.id and f"{old.id} -> {new.id}" in result.stdout
        assert not (home / "keys" / "vault.key.new").exists()
        assert (home / "keys" / "vault.key").stat().st_mode & 0o777 == 0o600
        stats = json.loads(run("vault", "stats", "--json").stdout)
        assert stats["vault_keys"] == {new.id: "active"}
        found = run("reidentify", "--study", PSEUDO.study_id, "--purpose", "after rotation")
        assert found.exit_code == 0 and ORIG.patient_id in found.stdout
        assert _audit_events(home)[:2] == [("vault.key", "success")] * 2

    def test_rotate_with_the_key_in_the_environment(
        self, home: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        secret = (home / "keys" / "vault.key").read_text().strip()
        (home / "keys" / "vault.key").unlink()
        monkeypatch.setenv("DICOMVEIL_VAULT_KEY", secret)
        result = run("keys", "rotate-vault")
        assert result.exit_code == 0, result.stderr
        staged = home / "keys" / "vault.key.new"
        assert str(staged) in result.stdout and staged.exists()
        monkeypatch.setenv("DICOMVEIL_VAULT_KEY", staged.read_text().strip())
        assert run("reidentify", "--study", PSEUDO.study_id, "--purpose", "x").exit_code == 0


class TestRotationRecovery:
    @pytest.mark.parametrize("crash_after_batches", [1, None])
    def test_rerun_finishes_an_interrupted_rotation(
        self, home: Path, crash_after_batches: int | None
    ) -> None:
        old = load_key("vault", create=False)
        staged = home / "keys" / "vault.key.new"
        new_secret = create_key_file(staged)

        def crash(count: int) -> None:
            if crash_after_batches is not None:
                raise KeyboardInterrupt

        with open_vault() as vault, contextlib.suppress(KeyboardInterrupt):
            rotate_vault_key(vault, old.secret, new_secret, batch_size=2, progress=crash)
        result = run("keys", "rotate-vault")
        assert result.exit_code == 0, result.stderr
        assert load_key("vault", create=False).secret == new_secret and not staged.exists()
        assert run("reidentify", "--study", PSEUDO.study_id, "--purpose", "x").exit_code == 0

    def test_no_vault_no_staged_key(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        isolate(monkeypatch, tmp_path)
        create_key_file(tmp_path / "keys" / "vault.key")
        result = run("keys", "rotate-vault")
        assert result.exit_code == 1 and "no vault" in result.stderr
        assert not (tmp_path / "keys" / "vault.key.new").exists()
