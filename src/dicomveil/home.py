"""Where dicomveil keeps its state: keys, vault, audit log.

Everything lives under ``$DICOMVEIL_HOME``, by default the platform's user data directory
(``~/.local/share/dicomveil`` on Linux). Never inside a destination or batch folder.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["state_home"]

ENV_HOME = "DICOMVEIL_HOME"


def state_home(environ: dict[str, str] | None = None, *, create: bool = True) -> Path:
    """Return the state folder (created with mode 0700 if missing and ``create``).

    Parameters
    ----------
    environ:
        The environment to read ``DICOMVEIL_HOME`` from; defaults to :data:`os.environ`.
    create:
        Create the folder when it is missing (a dry run creates nothing).
    """
    env = os.environ if environ is None else environ
    configured = env.get(ENV_HOME)
    if configured:
        home = Path(configured).expanduser()
    else:
        from platformdirs import user_data_dir

        home = Path(user_data_dir("dicomveil", appauthor=False))
    if create:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return home
