"""Reading and writing DICOM fast and safely.

Only the header is parsed; the top-level pixel data is located (:class:`PixelSpan`) and
later copied as bytes from the source file, so memory stays bounded whatever the file
size. Outputs are written atomically (temporary file, then rename) with a fresh File
Meta Information group and in the transfer syntax of the input.

Examples
--------
::

    instance = read_instance(src)
    dataset, trailing = instance.dataset, instance.trailing  # de-identify these
    write_instance(instance, dataset, trailing, dest)
"""

from __future__ import annotations

from dicomveil.dicomio._model import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    PIXEL_DATA_TAGS,
    Instance,
    PixelSpan,
    WriteResult,
)
from dicomveil.dicomio.reader import REQUIRED_UIDS, is_dicom, read_instance
from dicomveil.dicomio.writer import write_instance

__all__ = [
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "PIXEL_DATA_TAGS",
    "REQUIRED_UIDS",
    "Instance",
    "PixelSpan",
    "WriteResult",
    "is_dicom",
    "read_instance",
    "write_instance",
]
