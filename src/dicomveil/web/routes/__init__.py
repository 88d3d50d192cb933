"""The gateway's routers: one module per resource family, each exporting ``router``."""

from __future__ import annotations

__all__: list[str] = []
