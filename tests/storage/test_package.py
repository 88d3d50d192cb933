"""The storage package as a whole: exports, light imports, the shared put/verify template."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

import dicomveil.storage
from dicomveil.errors import StorageError
from dicomveil.ports import BlobStore
from dicomveil.storage import FileBlobStore, MemoryBlobStore
from dicomveil.storage._values import Payload


def test_all_is_sorted_and_complete() -> None:
    public = {name for name in vars(dicomveil.storage) if not name.startswith("_")}
    modules = {"azure", "file", "gcs", "memory", "s3", "url", "annotations"}
    assert dicomveil.storage.__all__ == sorted(dicomveil.storage.__all__)
    assert set(dicomveil.storage.__all__) == public - modules


def test_importing_storage_imports_no_cloud_sdk() -> None:
    code = (
        "import sys, dicomveil.storage as s, tempfile;"
        "s.open_store('memory://x'); s.open_store(tempfile.mkdtemp());"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in"
        " {'boto3','botocore','azure','google','requests'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_local_adapters_satisfy_the_protocol(tmp_path: Path) -> None:
    stores: list[BlobStore] = [MemoryBlobStore(), FileBlobStore(tmp_path)]  # checked by mypy
    assert all(isinstance(store, BlobStore) for store in stores)


class CorruptingStore(MemoryBlobStore):
    """Loses the last byte of everything it stores, like a broken transfer would."""

    def _write(
        self, key: str, payload: Payload, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        broken = Payload.from_bytes(payload.read()[:-1])
        super()._write(key, broken, content_type, metadata)


def test_upload_that_does_not_verify_is_deleted_and_reported() -> None:
    store = CorruptingStore()
    secret = "PATIENT-NAME-SECRET"
    with pytest.raises(StorageError, match="did not verify") as raised:
        store.put_bytes("a/b", b"content", content_type="text/plain", metadata={"n": secret})
    assert secret not in str(raised.value)
    assert store.head("a/b") is None


def test_stores_are_context_managers() -> None:
    with MemoryBlobStore("cm") as store:
        assert repr(store) == "MemoryBlobStore('memory://cm')"
