"""What is particular to the memory store: sharing by name, isolation, thread safety."""

from __future__ import annotations

import gc
from concurrent.futures import ThreadPoolExecutor

from dicomveil.storage import MemoryBlobStore, open_store


class TestMemoryStore:
    def test_constructed_stores_are_private(self) -> None:
        first, second = MemoryBlobStore("same"), MemoryBlobStore("same")
        first.put_bytes("k", b"x", content_type="text/plain")
        assert second.head("k") is None

    def test_named_store_lives_while_referenced(self) -> None:
        store = open_store("memory://lifetime-test")
        store.put_bytes("k", b"x", content_type="text/plain")
        assert open_store("memory://lifetime-test").get_bytes("k") == b"x"
        del store
        gc.collect()
        assert open_store("memory://lifetime-test").head("k") is None

    def test_returned_metadata_is_a_copy(self) -> None:
        store = MemoryBlobStore()
        metadata = {"a": "1"}
        info = store.put_bytes("k", b"x", content_type="text/plain", metadata=metadata)
        metadata["a"] = "2"
        info.metadata["a"] = "3"  # type: ignore[index]
        head = store.head("k")
        assert head is not None
        assert dict(head.metadata) == {"a": "1"}

    def test_concurrent_writers_and_readers(self) -> None:
        store = MemoryBlobStore()

        def work(worker: int) -> None:
            for i in range(50):
                key = f"w{worker}/{i}"
                data = f"{worker}-{i}".encode()
                store.put_bytes(key, data, content_type="text/plain", metadata={"i": str(i)})
                assert store.get_bytes(key) == data
                list(store.list(f"w{worker}/"))

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(work, range(8)))
        assert len(list(store.list())) == 400
        assert [item.key for item in store.list("w3/4")] == ["w3/4"] + [
            f"w3/{i}" for i in range(40, 50)
        ]
