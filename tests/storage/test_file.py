"""What is particular to the file store: layout, atomic writes, sidecars, the root boundary."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from dicomveil.errors import ConfigError, StorageError
from dicomveil.ports import BlobInfo
from dicomveil.storage import FileBlobStore, FileUpload, open_store
from dicomveil.storage.file import META_DIR

DICOM = "application/dicom"


@pytest.fixture
def store(tmp_path: Path) -> FileBlobStore:
    return FileBlobStore(tmp_path / "root")


def all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


class TestLayout:
    def test_object_is_stored_verbatim_with_a_hidden_sidecar(self, store: FileBlobStore) -> None:
        store.put_bytes("s/1.dcm", b"DICM", content_type=DICOM, metadata={"k": "v"})
        assert (store.root / "s" / "1.dcm").read_bytes() == b"DICM"
        assert all_files(store.root) == [f"{META_DIR}/s/1.dcm.json", "s/1.dcm"]
        assert [item.key for item in store.list()] == ["s/1.dcm"]

    def test_missing_root_without_create_is_a_config_error(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="not a directory"):
            FileBlobStore(tmp_path / "absent", create=False)

    def test_root_that_is_a_file_is_a_config_error(self, tmp_path: Path) -> None:
        (tmp_path / "f").write_bytes(b"")
        with pytest.raises((ConfigError, StorageError)):
            FileBlobStore(tmp_path / "f")

    def test_objects_are_private_to_the_owner(self, store: FileBlobStore) -> None:
        store.put_bytes("p", b"x", content_type=DICOM)
        assert (store.root / "p").stat().st_mode & 0o077 == 0


class TestAtomicity:
    def test_failed_write_keeps_the_old_object_and_leaves_no_temporary(
        self, store: FileBlobStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store.put_bytes("a", b"old", content_type=DICOM, metadata={"v": "1"})

        def broken_replace(src: object, dst: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "replace", broken_replace)
        with pytest.raises(StorageError, match="No space left on device") as raised:
            store.put_bytes("a", b"new", content_type=DICOM, metadata={"v": "2"})
        assert isinstance(raised.value.__cause__, OSError)
        monkeypatch.undo()
        assert store.get_bytes("a") == b"old"
        info = store.head("a")
        assert info is not None
        assert dict(info.metadata) == {"v": "1"}
        assert all_files(store.root) == [f"{META_DIR}/a.json", "a"]

    def test_stale_sidecar_is_not_trusted(self, store: FileBlobStore) -> None:
        store.put_bytes("a", b"content", content_type=DICOM, metadata={"v": "1"})
        (store.root / "a").write_bytes(b"changed by hand")
        info = store.head("a")
        assert info is not None
        assert (info.size, info.content_type, dict(info.metadata), info.sha256) == (
            15,
            None,
            {},
            None,
        )

    def test_corrupt_sidecar_is_ignored(self, store: FileBlobStore) -> None:
        store.put_bytes("a", b"content", content_type=DICOM)
        (store.root / META_DIR / "a.json").write_text("{not json")
        info = store.head("a")
        assert info is not None
        assert (info.size, info.sha256) == (7, None)

    def test_delete_removes_the_sidecar(self, store: FileBlobStore) -> None:
        store.put_bytes("d/a", b"x", content_type=DICOM)
        store.delete("d/a")
        assert all_files(store.root) == []


class TestBoundary:
    def test_symlink_out_of_the_root_is_refused(self, store: FileBlobStore, tmp_path: Path) -> None:
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "secret").write_bytes(b"secret")
        (store.root / "link").symlink_to(outside)
        with pytest.raises(ValueError, match="outside the store root"):
            store.get_bytes("link/secret")
        with pytest.raises(ValueError, match="outside the store root"):
            store.put_bytes("link/new", b"x", content_type=DICOM)
        assert not (outside / "new").exists()
        assert list(store.list()) == []

    def test_symlinked_file_out_of_the_root_is_not_listed(
        self, store: FileBlobStore, tmp_path: Path
    ) -> None:
        (tmp_path / "secret").write_bytes(b"secret")
        (store.root / "leak").symlink_to(tmp_path / "secret")
        store.put_bytes("real", b"x", content_type=DICOM)
        assert [item.key for item in store.list()] == ["real"]

    def test_key_that_is_a_folder_is_not_an_object(self, store: FileBlobStore) -> None:
        store.put_bytes("a/b", b"x", content_type=DICOM)
        assert store.head("a") is None
        store.delete("a")
        assert store.get_bytes("a/b") == b"x"

    def test_key_below_an_object_is_a_storage_error(self, store: FileBlobStore) -> None:
        store.put_bytes("a", b"x", content_type=DICOM)
        with pytest.raises(StorageError, match="put 'a/b'"):
            store.put_bytes("a/b", b"y", content_type=DICOM)

    def test_root_symlink_is_fine(self, tmp_path: Path) -> None:
        (tmp_path / "real").mkdir()
        (tmp_path / "alias").symlink_to(tmp_path / "real")
        store = open_store(str(tmp_path / "alias"))
        store.put_bytes("k", b"x", content_type=DICOM)
        assert (tmp_path / "real" / "k").read_bytes() == b"x"


class TestPutFiles:
    def test_consumed_files_are_moved_in(self, store: FileBlobStore, tmp_path: Path) -> None:
        source = tmp_path / "staged.dcm"
        source.write_bytes(b"DICM" * 100)
        inode = source.stat().st_ino
        (info,) = store.put_files(
            [FileUpload("s/1.dcm", source, "application/dicom")], consume=True
        )
        assert not isinstance(info, StorageError)
        target = store.root / "s" / "1.dcm"
        assert not source.exists() and target.stat().st_ino == inode
        assert target.stat().st_mode & 0o777 == 0o600
        assert all(".dicomveil-tmp" not in name for name in all_files(store.root))

    def test_copies_unless_consumed(self, store: FileBlobStore, tmp_path: Path) -> None:
        source = tmp_path / "kept.dcm"
        source.write_bytes(b"DICM")
        store.put_files([FileUpload("s/1.dcm", source, "application/dicom")])
        assert source.read_bytes() == b"DICM" == store.get_bytes("s/1.dcm")

    def test_one_failure_leaves_the_others_stored(
        self, store: FileBlobStore, tmp_path: Path
    ) -> None:
        (store.root / "s" / "blocked.dcm").mkdir(parents=True)  # a folder where the object goes
        uploads = []
        for name in ("a", "blocked", "b"):
            source = tmp_path / f"{name}.dcm"
            source.write_bytes(name.encode() * 10)
            uploads.append(FileUpload(f"s/{name}.dcm", source, "application/dicom"))
        first, blocked, last = store.put_files(uploads, consume=True)
        assert isinstance(blocked, StorageError)
        assert store.get_bytes("s/a.dcm") == b"a" * 10 and store.get_bytes("s/b.dcm") == b"b" * 10
        assert not isinstance(first, StorageError) and not isinstance(last, StorageError)
        assert all(".dicomveil-tmp" not in name for name in all_files(store.root))

    def test_a_digest_taken_while_writing_is_not_taken_again(
        self, store: FileBlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The caller wrote (and hashed) the file: the store does not read it to hash it."""
        source = tmp_path / "written.dcm"
        source.write_bytes(b"DICM" * 100)
        digest = hashlib.sha256(source.read_bytes()).hexdigest()

        def no_second_read(*args: object, **kwargs: object) -> None:
            raise AssertionError("the file was read again to hash it")

        monkeypatch.setattr("dicomveil.storage._values.hashlib.file_digest", no_second_read)
        (info,) = store.put_files([FileUpload("s/1.dcm", source, DICOM, sha256=digest)])
        assert not isinstance(info, StorageError)
        assert (info.size, info.sha256) == (400, digest)
        head = store.head("s/1.dcm")
        assert head is not None and head.sha256 == digest
        with pytest.raises(AssertionError, match="read again"):
            store.put_files([FileUpload("s/2.dcm", source, DICOM)])


class TestWithoutSidecars:
    @pytest.fixture
    def bare(self, tmp_path: Path) -> FileBlobStore:
        return FileBlobStore(tmp_path / "bare", sidecars=False)

    def test_one_file_per_object(self, bare: FileBlobStore, tmp_path: Path) -> None:
        bare.put_bytes("s/1.dcm", b"DICM", content_type=DICOM, metadata={"k": "v"})
        source = tmp_path / "staged.dcm"
        source.write_bytes(b"DICM" * 10)
        (stored,) = bare.put_files([FileUpload("s/2.dcm", source, DICOM)], consume=True)
        assert not isinstance(stored, StorageError)
        assert all_files(bare.root) == ["s/1.dcm", "s/2.dcm"]
        assert [(item.key, item.size) for item in bare.list()] == [("s/1.dcm", 4), ("s/2.dcm", 40)]

    def test_url_option(self, tmp_path: Path) -> None:
        store = open_store((tmp_path / "r").as_uri(), sidecars=False, fsync=False)
        assert isinstance(store, FileBlobStore) and not store.sidecars
        store.put_bytes("a", b"x", content_type=DICOM)
        assert all_files(store.root) == ["a"]

    def test_old_sidecars_are_not_claimed(self, tmp_path: Path) -> None:
        FileBlobStore(tmp_path / "r").put_bytes("a", b"abc", content_type=DICOM)
        bare = FileBlobStore(tmp_path / "r", sidecars=False)
        assert bare.head("a") == BlobInfo(key="a", size=3)

    def test_size_mismatch_does_not_verify(
        self, bare: FileBlobStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real_replace = os.replace

        def truncating_replace(src: str | Path, dst: str | Path) -> None:
            real_replace(src, dst)
            with open(dst, "r+b") as handle:  # the disk lost the end of the write
                handle.truncate(1)

        monkeypatch.setattr(os, "replace", truncating_replace)
        with pytest.raises(StorageError, match="did not verify"):
            bare.put_bytes("a", b"abc", content_type=DICOM)
        monkeypatch.undo()
        assert bare.head("a") is None
