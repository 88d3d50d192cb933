"""Where dicomveil keeps its state: keys, vault, audit log.

Everything lives under ``$DICOMVEIL_HOME``, by default the platform's user data directory
(``~/.local/share/dicomveil`` on Linux). Never inside a destination or batch folder. With a
shared database (``$DICOMVEIL_DATABASE_URL``, :func:`shared_database_url`) the shared tables
live there instead (see :mod:`dicomveil.database`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["ENV_DATABASE_URL", "shared_database_url", "state_home"]

ENV_HOME = "DICOMVEIL_HOME"
ENV_DATABASE_URL = "DICOMVEIL_DATABASE_URL"
"""The environment variable naming the shared database."""


def shared_database_url(
    url: str | None = None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The shared database: ``url``, else ``$DICOMVEIL_DATABASE_URL``, else ``None`` (each
    store keeps its embedded default under the state folder). Here, not in
    :mod:`dicomveil.database`, so that deciding costs no SQLAlchemy import."""
    env = os.environ if environ is None else environ
    return url or env.get(ENV_DATABASE_URL) or None


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
