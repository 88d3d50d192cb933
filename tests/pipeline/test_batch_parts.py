"""The parts of a batch one by one: journal, manifest, retries, ids, policy record, service."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dicomveil.errors import ConfigError, StorageError, StorageUnavailable
from dicomveil.keystore import key_id
from dicomveil.pipeline.batch import (
    BatchEvents,
    create_batch,
    fetch_manifest,
    resume_batch,
    run_batch,
)
from dicomveil.pipeline.batch_state import (
    BatchStatus,
    Priority,
    batch_folder,
    batch_status,
    list_batches,
    new_batch_id,
    policy_to_mapping,
)
from dicomveil.pipeline.batch_upload import RetryPolicy, Upload, upload_all
from dicomveil.pipeline.destination import open_destination, sweep_partial_writes
from dicomveil.pipeline.journal import Journal, JournalUpdate, batch_locked, is_locked
from dicomveil.pipeline.manifest import ManifestFile, build_manifest, encode_manifest
from dicomveil.profile.policy import (
    Override,
    OverrideAction,
    Policy,
    PrivateRule,
    policy_from_mapping,
)
from dicomveil.storage import MemoryBlobStore
from tests.pipeline.batch_support import KEY, phi_needles

SECRET = KEY.strip().encode()


class TestJournal:
    def test_states_move_forward_and_survive_reopening(self, tmp_path: Path) -> None:
        sources = [tmp_path / f"f{i}.dcm" for i in range(4)]
        with Journal.create(tmp_path / "b", {"batch_id": "X"}) as journal:
            assert journal.add_inputs(sources) == 4
            assert journal.add_inputs(sources) == 0  # discovery twice adds nothing
            a, b, c, d = journal.rows()
            journal.apply(
                [
                    JournalUpdate(a.id, "deidentified", staged="p/a", path="S1/x/a.dcm", size=5),
                    JournalUpdate(b.id, "deidentified", staged="p/b", path="S1/x/b.dcm", size=6),
                    JournalUpdate(c.id, "failed", reason="MalformedInputError: truncated"),
                ]
            )
            journal.mark_uploaded([((a.id,), "S1/x/a.dcm", 5, "ab" * 32)])
        with Journal.open(tmp_path / "b") as journal:
            counts = journal.counts()
            assert counts == {
                "discovered": 1,
                "deidentified": 1,
                "uploaded": 1,
                "failed": 1,
                "skipped": 0,
            }
            assert journal.meta() == {"batch_id": "X", "discovered": "1"}
            (uploaded,) = journal.rows("uploaded")
            assert uploaded.sha256 == "ab" * 32 and uploaded.source == sources[0]

    def test_staged_files_that_vanished_are_done_again(self, tmp_path: Path) -> None:
        staged = tmp_path / "staged"
        (staged / "p").mkdir(parents=True)
        (staged / "p" / "kept").write_bytes(b"x")
        with Journal.create(tmp_path / "b", {"batch_id": "X"}) as journal:
            journal.add_inputs([tmp_path / "1", tmp_path / "2"])
            one, two = journal.rows()
            journal.apply(
                [
                    JournalUpdate(one.id, "deidentified", staged="p/kept"),
                    JournalUpdate(two.id, "deidentified", staged="p/gone"),
                ]
            )
            assert journal.reset_missing(staged) == 1
            assert [r.staged for r in journal.rows("deidentified")] == ["p/kept"]

    def test_open_refuses_a_missing_or_unfinished_journal(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError):
            Journal.open(tmp_path)
        with Journal.create(tmp_path / "b", {"batch_id": "X"}), pytest.raises(ConfigError):
            Journal.create(tmp_path / "b", {"batch_id": "X"})

    def test_lock_is_exclusive_and_released(self, tmp_path: Path) -> None:
        assert not is_locked(tmp_path)
        with batch_locked(tmp_path) as first:
            assert first and is_locked(tmp_path)
            with batch_locked(tmp_path) as second:
                assert not second
        assert not is_locked(tmp_path)


class TestManifest:
    def test_grouped_sorted_counted_and_stable(self) -> None:
        files = [
            ManifestFile("S2/b/2.dcm", "S2", "MR", 20, "2" * 64),
            ManifestFile("S1/a/1.dcm", "S1", "CT", 10, "1" * 64),
            ManifestFile("S1/a/0.dcm", "S1", "", 5, "0" * 64),
            ManifestFile("S1/a/1.dcm", "S1", "CT", 10, "1" * 64),  # the same instance twice
        ]
        header = {"batch_id": "B", "priority": "STAT", "organization": "", "created_at": "T"}
        manifest = build_manifest(header, files)
        assert manifest["total_studies"] == 2 and manifest["total_images"] == 3
        assert manifest["total_bytes"] == 35
        first, second = manifest["studies"]
        assert first["study_id"] == "S1" and first["modalities"] == ["CT"]
        assert [f["path"] for f in first["files"]] == ["S1/a/0.dcm", "S1/a/1.dcm"]
        assert second["modalities"] == ["MR"] and second["image_count"] == 1
        assert list(manifest)[:5] == ["format_version", *header]
        again = build_manifest(header, list(reversed(files)))
        assert encode_manifest(manifest) == encode_manifest(again)
        assert json.loads(encode_manifest(manifest)) == manifest


class TestRetries:
    def test_backoff_doubles_up_to_the_maximum_with_jitter(self) -> None:
        policy = RetryPolicy(retries=5, initial=0.5, maximum=3.0)
        assert [policy.delay(n, rng=lambda: 1.0) for n in range(5)] == [0.5, 1, 2, 3, 3]
        assert policy.delay(0, rng=lambda: 0.0) == 0.25
        with pytest.raises(ValueError):
            RetryPolicy(retries=-1)

    def test_transient_failures_are_retried(self, tmp_path: Path) -> None:
        store = _Flaky(failures=2)
        path = tmp_path / "f"
        path.write_bytes(b"data")
        done: list[str] = []
        messages: list[str] = []
        error = upload_all(
            store,
            [Upload("a/f", path, "application/dicom")],
            threads=2,
            retry=RetryPolicy(retries=3, initial=0.01, maximum=0.02),
            on_done=lambda item, info: done.append(item.key),
            on_retry=messages.append,
        )
        assert error is None and done == ["a/f"] and len(messages) == 2
        assert "retry 1 of 3" in messages[0]

    def test_out_of_retries_stops_every_upload(self, tmp_path: Path) -> None:
        store = _Flaky(failures=1000)
        path = tmp_path / "f"
        path.write_bytes(b"data")
        items = [Upload(f"a/{i}", path, "application/dicom") for i in range(50)]
        error = upload_all(
            store,
            items,
            threads=2,
            retry=RetryPolicy(retries=1, initial=0.01, maximum=0.01),
            on_done=lambda item, info: None,
        )
        assert isinstance(error, StorageUnavailable)
        assert store.attempts <= 2 * 2 * 2  # a few in flight, never the 50 items

    def test_other_storage_errors_stop_at_once(self, tmp_path: Path) -> None:
        store = _Flaky(failures=1, error=StorageError("access denied"))
        path = tmp_path / "f"
        path.write_bytes(b"data")
        error = upload_all(
            store,
            [Upload("a/f", path, "application/dicom")],
            threads=1,
            retry=RetryPolicy(retries=5, initial=0.01, maximum=0.01),
            on_done=lambda item, info: None,
        )
        assert isinstance(error, StorageError) and store.attempts == 1

    def test_an_unreadable_staged_file_is_a_storage_error(self, tmp_path: Path) -> None:
        error = upload_all(
            MemoryBlobStore(),
            [Upload("a/f", tmp_path / "missing", "application/dicom")],
            threads=1,
            retry=RetryPolicy(),
            on_done=lambda item, info: None,
        )
        assert isinstance(error, StorageError) and "could not be read" in str(error)


class _Flaky(MemoryBlobStore):
    """A memory store whose first ``failures`` uploads fail."""

    def __init__(self, failures: int, error: StorageError | None = None) -> None:
        super().__init__()
        self.failures, self.attempts = failures, 0
        self.error = error or StorageUnavailable("put memory://x: ConnectionRefusedError")

    def put_file(self, key: str, path: Path, **kwargs: Any) -> Any:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.error
        return super().put_file(key, path, **kwargs)


class TestIdsAndRecords:
    def test_ids_are_opaque_sortable_and_safe_in_paths(self, tmp_path: Path) -> None:
        now = datetime(2025, 1, 31, 12, tzinfo=UTC)
        first, later = new_batch_id(now), new_batch_id(now + timedelta(milliseconds=1))
        assert len(first) == 26 and first.isalnum() and first < later
        assert batch_folder(tmp_path, first.lower()) == tmp_path / "batches" / first
        for bad in ("../../etc/passwd", "", "01J000000000000000000000I0"):
            with pytest.raises(ConfigError):
                batch_folder(tmp_path, bad)

    def test_priorities(self) -> None:
        assert Priority.parse("stat") is Priority.STAT
        with pytest.raises(ConfigError, match="ROUTINE"):
            Priority.parse("soon")

    def test_policy_record_round_trips(self) -> None:
        policy = Policy.from_names(
            ["retain-longitudinal-modified-dates", "clean-descriptors"],
            overrides={
                0x00100040: Override(OverrideAction.KEEP),
                0x00081030: Override(OverrideAction.REPLACE, "CT CHEST"),
            },
            private_rules=(
                PrivateRule("ACME 1.0", OverrideAction.KEEP, 0x0029, 0x10),
                PrivateRule("OTHER", OverrideAction.REMOVE),
            ),
            organization="HOSP1",
            name="telerad",
        )
        record = json.loads(json.dumps(policy_to_mapping(policy)))
        assert policy_from_mapping(record) == policy

    def test_destination_options(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="endpoint"):
            open_destination(tmp_path.as_uri(), endpoint_url="http://x")
        (tmp_path / "B" / "s").mkdir(parents=True)
        (tmp_path / "B" / "s" / ".dicomveil-tmp-abc").write_bytes(b"half")
        (tmp_path / "B" / "s" / "kept.dcm").write_bytes(b"whole")
        assert sweep_partial_writes(tmp_path.as_uri(), "B") == 1
        assert [p.name for p in (tmp_path / "B" / "s").iterdir()] == ["kept.dcm"]
        assert sweep_partial_writes("memory://x", "B") == 0


class _Recorder(BatchEvents):
    def __init__(self) -> None:
        self.phases: list[tuple[str, int]] = []
        self.files: dict[str, int] = {}

    def phase(self, name: str, total: int) -> None:
        self.phases.append((name, total))

    def advance(self, name: str, files: int, size: int) -> None:
        self.files[name] = self.files.get(name, 0) + files


class TestService:
    """What the HTTP gateway relies on: create, follow, drive, status, manifest."""

    def test_create_follow_and_finish(self, tmp_path: Path, study: Path) -> None:
        home, store = tmp_path / "home", MemoryBlobStore("gateway")
        info = create_batch(
            study,
            store.url,
            policy=Policy(organization="HOSP1"),
            key_id=key_id(SECRET),
            priority="URGENT",
            home=home,
        )
        created = batch_status(info.batch_id, home)
        assert created.state == "created" and created.inputs["discovered"] == 18
        assert created.resumable
        events = _Recorder()
        result = resume_batch(
            info.batch_id, store=store, secret=SECRET, home=home, workers=1, events=events
        )
        assert result.ok and result.status.state == "complete"
        assert events.phases == [("deidentify", 18), ("upload", 18)]
        assert events.files == {"deidentify": 18, "upload": 18}
        manifest = fetch_manifest(store, info.batch_id)
        assert manifest == json.loads(store.get_bytes(info.manifest_key))
        assert manifest["priority"] == "URGENT" and manifest["organization"] == "HOSP1"
        assert manifest["total_images"] == 18 and manifest["total_studies"] == 3
        done = batch_status(info.batch_id, home)
        assert done == BatchStatus.from_dict(done.to_dict())
        assert done.manifest_sha256 == store.head(info.manifest_key).sha256  # type: ignore[union-attr]
        assert [s.batch_id for s in list_batches(home)] == [info.batch_id]
        text = json.dumps(done.to_dict()).encode()
        assert not any(needle in text for needle in phi_needles())

    def test_wrong_key_and_busy_batch_are_refused(self, tmp_path: Path, study: Path) -> None:
        home, store = tmp_path / "home", MemoryBlobStore()
        info = create_batch(study, store.url, policy=Policy(), key_id=key_id(SECRET), home=home)
        with pytest.raises(ConfigError, match="same key"):
            resume_batch(info.batch_id, store=store, secret=b"another-secret-123456", home=home)
        with batch_locked(info.folder), pytest.raises(ConfigError, match="another process"):
            resume_batch(info.batch_id, store=store, secret=SECRET, home=home)

    def test_nothing_readable_fails_without_a_manifest(self, tmp_path: Path) -> None:
        source = tmp_path / "in"
        source.mkdir()
        (source / "notes.txt").write_text("not dicom")
        store = MemoryBlobStore()
        result = run_batch(
            source, store.url, store=store, secret=SECRET, policy=Policy(),
            home=tmp_path / "home", workers=1,
        )  # fmt: skip
        assert result.status.state == "failed" and not result.ok
        assert list(store.list()) == []

    def test_folders_must_not_overlap(self, tmp_path: Path, study: Path) -> None:
        common: dict[str, Any] = {"policy": Policy(), "key_id": "k"}
        with pytest.raises(ConfigError, match="inside SOURCE"):
            create_batch(study, "memory://x", home=study / "home", **common)
        with pytest.raises(ConfigError, match="inside SOURCE"):
            create_batch(study, "x", home=tmp_path / "h", local_dest=study / "o", **common)
        with pytest.raises(ConfigError, match="overlap"):
            create_batch(study, "x", home=tmp_path / "d" / "h", local_dest=tmp_path / "d", **common)
        with pytest.raises(ConfigError, match="no files"):
            (tmp_path / "empty").mkdir()
            create_batch(tmp_path / "empty", "x", home=tmp_path / "h", **common)

    def test_the_same_instance_twice_is_stored_once(self, tmp_path: Path, study: Path) -> None:
        original = next(study.rglob("*.dcm"))
        (study / "copy-of-an-instance.dcm").write_bytes(original.read_bytes())
        store = MemoryBlobStore()
        result = run_batch(
            study, store.url, store=store, secret=SECRET, policy=Policy(),
            home=tmp_path / "home", workers=1, threads=4,
        )  # fmt: skip
        # the copy is counted as a duplicate (skipped, with why): one object for both
        assert result.ok and result.status.inputs["uploaded"] == 18
        assert result.status.inputs["skipped"] == 1
        assert result.status.images == 18
        keys = [item.key for item in store.list()]
        assert len(keys) == 19  # 18 instances and the manifest
        manifest = json.loads(store.get_bytes(next(k for k in keys if k.endswith(".json"))))
        assert manifest["total_images"] == 18
        for study_entry in manifest["studies"]:
            for item in study_entry["files"]:
                info = store.head(f"{result.status.batch_id}/{item['path']}")
                assert info is not None and info.sha256 == item["sha256"]
