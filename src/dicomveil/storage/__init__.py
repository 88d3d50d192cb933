"""Blob storage: one interface, many backends, addressed by URL.

>>> from dicomveil.storage import open_store
>>> store = open_store("memory://docs")
>>> info = store.put_bytes("a/1.dcm", b"DICM", content_type="application/dicom")
>>> [item.key for item in store.list("a/")]
['a/1.dcm']

Every adapter implements :class:`dicomveil.ports.BlobStore` with the same rules for keys and
metadata (see :mod:`dicomveil.storage._keys`), the same ``from_url`` / ``from_settings``
constructors, and maps its SDK's exceptions to :mod:`dicomveil.errors` in a
``map_<sdk>_errors()`` context manager. Cloud SDKs are imported only when a cloud store is
opened, so ``import dicomveil.storage`` stays light.

**Metadata values must never carry PHI**: they travel in HTTP headers and show in cloud
consoles. Use pseudonyms, opaque ids and hashes.
"""

from __future__ import annotations

from dicomveil.storage._base import BaseBlobStore
from dicomveil.storage._values import FileUpload, StoreSettings, Transfer
from dicomveil.storage.azure import AzureBlobStore
from dicomveil.storage.file import FileBlobStore
from dicomveil.storage.gcs import GcsBlobStore
from dicomveil.storage.memory import MemoryBlobStore
from dicomveil.storage.s3 import S3BlobStore
from dicomveil.storage.url import open_store, parse_store_url

__all__ = [
    "AzureBlobStore",
    "BaseBlobStore",
    "FileBlobStore",
    "FileUpload",
    "GcsBlobStore",
    "MemoryBlobStore",
    "S3BlobStore",
    "StoreSettings",
    "Transfer",
    "open_store",
    "parse_store_url",
]
