"""Who is acting: the default actor named in audit entries (light: no dependencies)."""

from __future__ import annotations

import getpass
import os

__all__ = ["default_actor"]


def default_actor() -> str:
    """The operating-system user running this process (the default actor)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"
