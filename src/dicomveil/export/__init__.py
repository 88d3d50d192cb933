"""Exports of the de-identified index for analytics (Parquet, partitioned by study date).

See :mod:`dicomveil.export.parquet` for the layout and the incremental rules.
"""

from __future__ import annotations

from dicomveil.export.parquet import (
    WATERMARK_KEY,
    ExportResult,
    export_parquet,
    read_watermark,
    watermark_key,
)

__all__ = ["WATERMARK_KEY", "ExportResult", "export_parquet", "read_watermark", "watermark_key"]
