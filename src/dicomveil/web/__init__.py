"""The HTTP gateway: de-identifying API, re-identification, batches, and DICOMweb.

``create_app(settings)`` (FastAPI) is imported lazily, so ``dicomveil.tokens`` and
``dicomveil.web.settings`` stay usable without the web framework (``dicomveil tokens``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dicomveil.web.settings import Settings

if TYPE_CHECKING:
    from dicomveil.web.app import create_app

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from dicomveil.web.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
