"""Starting the gateway: what ``dicomveil serve`` calls once its options are parsed.

The command line (``dicomveil.cli``) and the gateway (``dicomveil.web``) are edges that never
import each other; this module is the one exception the import contract allows
(``dicomveil.cli.serve -> dicomveil.web.launch``, see docs/architecture.md): the command
hands over plain values, and everything about the web stack (its settings, uvicorn, the
app, its worker processes) stays on this side.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dicomveil.web.settings import ENV_SETTINGS, Settings

__all__ = ["load_settings", "run_gateway"]


def load_settings(config: Path | None, **overrides: Any) -> Settings:
    """The gateway's settings from ``config``, the environment and the command's flags,
    with the policy checked.

    Raises
    ------
    ConfigError, ProfileError
        Unknown or malformed settings, an invalid policy.
    """
    settings = Settings.load(config=config, **overrides)
    settings.policy()
    return settings


def run_gateway(
    settings: Settings,
    *,
    host: str,
    port: int,
    ssl_certfile: Path | None,
    ssl_keyfile: Path | None,
    workers: int,
    log_level: str,
    announce: Callable[[str], None],
) -> None:
    """Serve until stopped (``workers`` server processes; ``announce`` prints the address).

    Raises
    ------
    DicomveilError
        The resources the settings name could not be opened (one server process).
    """
    import uvicorn

    from dicomveil.viewer import installed_viewer
    from dicomveil.web.server import http_protocol

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    scheme = "https" if ssl_certfile else "http"
    viewer = settings.viewer and installed_viewer(settings.home) is not None
    announce(
        f"dicomveil gateway on {scheme}://{host}:{port} (DICOMweb at /dicomweb"
        + (", console at /console/" if settings.console else "")
        + (", viewer at /viewer/" if viewer else "")
        + ")"
    )
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "ssl_certfile": str(ssl_certfile) if ssl_certfile else None,
        "ssl_keyfile": str(ssl_keyfile) if ssl_keyfile else None,
        "access_log": False,  # ours names route templates, never paths or queries
        "log_level": log_level.lower(),
        "server_header": False,
        "http": http_protocol(),
        "timeout_keep_alive": settings.idle_timeout,
    }
    if workers == 1:
        from dicomveil.web.app import create_app, quiet_pydicom

        quiet_pydicom()
        uvicorn.run(create_app(settings), **common)
        return
    os.environ[ENV_SETTINGS] = settings.to_json()
    uvicorn.run("dicomveil.web.app:app_from_environment", factory=True, workers=workers, **common)
