"""The one ingest service (issue #12): de-identify → store → way back → index → events, with
PS3.4 statuses and typed failures, for every entry point, from several threads at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pydicom
import pytest

from dicomveil.demo import write_demo_study
from dicomveil.pipeline.events import InstanceStored
from dicomveil.pipeline.failures import FailureKind
from dicomveil.pipeline.ingest import IngestResult, Origin
from dicomveil.pipeline.statuses import CANNOT_UNDERSTAND, MISMATCH, STATUSES, SUCCESS
from dicomveil.runtime import Runtime
from dicomveil.settings import CoreSettings

KEY = "ingest-service-test-key-0123456789abcdef"
PHI = "SECRETPATIENT^PLANTED"
ORIGIN = Origin(entry="dimse", actor="ae:MODALITY1", calling_ae="MODALITY1", peer="127.0.0.1")


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    for name in ("DICOMVEIL_KEY", "DICOMVEIL_VAULT_KEY", "DICOMVEIL_AUDIT_KEY"):
        monkeypatch.delenv(name, raising=False)
    key = tmp_path / "key"
    key.write_text(KEY)
    settings = CoreSettings(home=tmp_path / "home", key_file=key, deid_processes=2)
    with Runtime.open(settings) as opened:
        yield opened


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    paths = write_demo_study(tmp_path / "in", patients=1, series_per_study=1, images_per_series=4)
    for path in paths:  # a planted name, to look for afterwards
        ds = pydicom.dcmread(path)
        ds.PatientName = PHI
        ds.save_as(path)
    return paths


def test_ingest_stores_records_indexes_and_announces(
    runtime: Runtime, files: list[Path], tmp_path: Path
) -> None:
    heard: list[Sequence[InstanceStored]] = []
    runtime.ingest.subscribe(heard.append)
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not DICOM " * 50)
    results = runtime.ingest.ingest([*files[:2], bad, *files[2:]], ORIGIN)

    assert [r.source for r in results] == [*files[:2], bad, *files[2:]]  # input order
    assert [r.status for r in results] == [SUCCESS, SUCCESS, CANNOT_UNDERSTAND, SUCCESS, SUCCESS]
    assert [r.ok for r in results] == [True, True, False, True, True]
    failed = results[2]
    assert failed.failure is not None and failed.failure.kind is FailureKind.MALFORMED
    assert "bad.dcm" not in failed.failure.reason
    originals = {str(pydicom.dcmread(f).SOPInstanceUID) for f in files}
    good = [r for r in results if r.ok]
    assert all(r.sop_instance_uid and r.sop_instance_uid not in originals for r in good)

    (events,) = heard  # one call, one notification, after indexing
    assert [e.sop_instance_uid for e in events] == [r.sop_instance_uid for r in good]
    for event in events:
        assert event.origin == ORIGIN and event.modality == "CT"
        assert runtime.store.head(event.storage_key) is not None
        assert event.attributes["SOPInstanceUID"] == event.sop_instance_uid
        assert PHI not in repr(event)
        found = runtime.index.instances(event.study_uid, event.series_uid, event.sop_instance_uid)
        assert found and found[0].storage_key == event.storage_key

    for path in files:  # the caller may delete its files: nothing refers to them
        path.unlink()
    again = runtime.ingest.ingest(files[:1], ORIGIN)
    assert again[0].status != SUCCESS  # gone: fails alone, no exception


def test_the_same_instance_again_is_an_idempotent_success(
    runtime: Runtime, files: list[Path]
) -> None:
    heard: list[Sequence[InstanceStored]] = []
    first = runtime.ingest.ingest(files[:1], ORIGIN)
    runtime.ingest.subscribe(heard.append)
    second = runtime.ingest.ingest(files[:1], ORIGIN)
    assert first[0].status == second[0].status == SUCCESS
    assert first[0].sop_instance_uid == second[0].sop_instance_uid
    assert heard == []  # nothing new stored


def test_study_restriction_is_a_mismatch_status(runtime: Runtime, files: list[Path]) -> None:
    (result,) = runtime.ingest.ingest(files[:1], ORIGIN, study="2.25.1")
    assert result.status == MISMATCH and not result.ok
    assert result.failure is not None and result.failure.kind is FailureKind.STUDY_MISMATCH


def test_single_files_from_many_threads(runtime: Runtime, files: list[Path]) -> None:
    """The DICOM node calls ingest once per C-STORE, from one thread per association."""
    results: dict[int, IngestResult] = {}

    def send(number: int) -> None:
        (results[number],) = runtime.ingest.ingest([files[number]], ORIGIN)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(files))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(results[n].status == SUCCESS for n in range(len(files)))
    assert len({r.sop_instance_uid for r in results.values()}) == len(files)


def test_a_failing_listener_costs_nothing(
    runtime: Runtime, files: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_events: Sequence[InstanceStored]) -> None:
        raise RuntimeError(PHI)

    heard: list[Sequence[InstanceStored]] = []
    runtime.ingest.subscribe(broken)
    runtime.ingest.subscribe(heard.append)
    (result,) = runtime.ingest.ingest(files[:1], ORIGIN)
    assert result.ok and len(heard) == 1
    assert "RuntimeError" in caplog.text and PHI not in caplog.text


def test_every_failure_kind_has_a_status() -> None:
    assert set(STATUSES) == set(FailureKind)


def _other_content(path: Path, folder: Path) -> Path:
    """``path``'s instance (same SOP Instance UID) with other content."""
    ds = pydicom.dcmread(path)
    ds.PixelData = bytes(len(ds.PixelData))  # other pixels, kept as they are
    target = folder / "other.dcm"
    ds.save_as(target)
    return target


def test_no_file_stays_in_the_staging_folder(
    runtime: Runtime, files: list[Path], tmp_path: Path
) -> None:
    """Workspaces are used again between calls (no folders made per call), never with files
    left in them: archived, refused or only de-identified (``archive=False``)."""
    runtime.ingest.ingest(files[:2], ORIGIN)
    runtime.ingest.ingest(files[2:], ORIGIN, archive=False)
    runtime.ingest.ingest(files[:1], ORIGIN, study="2.25.1")
    (conflict,) = runtime.ingest.ingest([_other_content(files[0], tmp_path)], ORIGIN)
    assert conflict.failure is not None and conflict.failure.kind is FailureKind.CONFLICT
    assert [p for p in runtime.staging.rglob("*") if not p.is_dir()] == []
    assert len(list(runtime.staging.iterdir())) == 1  # one workspace, used by every call


def test_the_run_entry_names_where_the_instances_came_from(
    runtime: Runtime, files: list[Path]
) -> None:
    """The calling AE title and the client's address go into the run's start entry."""
    runtime.ingest.ingest(files[:1], ORIGIN)
    (start,) = [e for e in runtime.audit.entries() if e.event == "deid.run.start"]
    assert start.details["calling_ae"] == "MODALITY1"
    assert start.details["peer"] == "127.0.0.1"
    assert start.details["entry"] == "dimse"


def test_the_vault_and_the_audit_log_are_written_at_once(
    runtime: Runtime, files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The way back and the audit entries are independent durable writes: the vault's
    transaction runs while the audit log is written (the call waits for the slower one,
    not for both in turn), and the call returns only once both are written."""
    assert runtime.vault is not None
    auditing, recorded = threading.Event(), threading.Event()
    record, append_many = runtime.vault.record, runtime.audit.append_many

    def slow_record(*args: Any) -> Any:
        overlapped = auditing.wait(timeout=10)  # the audit write started meanwhile
        result = record(*args)
        recorded.set()
        assert overlapped
        return result

    def watched_append(events: Any) -> Any:
        auditing.set()
        return append_many(events)

    monkeypatch.setattr(runtime.vault, "record", slow_record)
    monkeypatch.setattr(runtime.audit, "append_many", watched_append)
    (result,) = runtime.ingest.ingest(files[:1], ORIGIN)
    assert result.ok and recorded.is_set()


def test_a_vault_failure_fails_the_call_and_indexes_nothing(
    runtime: Runtime, files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dicomveil.errors import VaultError

    assert runtime.vault is not None

    def broken(*_args: Any) -> Any:
        raise VaultError("the vault is unavailable")

    monkeypatch.setattr(runtime.vault, "record", broken)
    with pytest.raises(VaultError):
        runtime.ingest.ingest(files[:1], ORIGIN)
    assert runtime.index.counts().instances == 0  # nothing of the call is visible
    runs = [e for e in runtime.audit.entries() if e.event == "deid.run.end"]
    assert runs and runs[-1].outcome == "failure"


def test_an_archive_fault_fails_each_instance_and_is_audited_without_values(
    runtime: Runtime,
    files: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unexpected error of the archive (not one failed put: the whole group raises) fails
    every instance of the call with a storage status: each is audited as a failure after its
    de-identified entry, nothing is indexed, and the error's text (which may quote a value)
    reaches neither the results, the audit log nor the log."""
    from dicomveil.audit.events import DEID_FILE
    from dicomveil.pipeline.statuses import OUT_OF_RESOURCES

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(f"archive exploded on {PHI}")

    monkeypatch.setattr(runtime.ingest.store, "put_files", broken)
    # One instance at a time: a small one is worked on (and archived) in the calling thread.
    results = [r for path in files[:2] for r in runtime.ingest.ingest([path], ORIGIN)]
    assert [r.ok for r in results] == [False, False]
    assert {r.status for r in results} == {OUT_OF_RESOURCES}
    assert all(PHI not in repr(r) for r in results)
    assert runtime.index.counts().instances == 0
    entries = list(runtime.audit.entries())
    per_file = [e for e in entries if e.event == DEID_FILE]
    # Each instance: recorded de-identified, then its archive failure.
    assert [e.outcome for e in per_file] == ["success", "failure"] * 2
    assert {e.details.get("error") for e in per_file[1::2]} == {"StorageError"}
    assert PHI not in repr(entries) and PHI not in caplog.text
    assert "RuntimeError" in caplog.text
