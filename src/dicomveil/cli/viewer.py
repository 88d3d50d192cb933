"""``dicomveil viewer``: install the OHIF Viewer that ``dicomveil serve`` shows at ``/viewer/``.

``viewer install [--version V]`` fetches ``@ohif/app`` from the npm registry (no npm
needed), checks its published integrity (and the pinned one), prunes what plain viewing
never loads and installs it under ``$DICOMVEIL_HOME/viewer``; ``viewer status`` tells what
is installed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from dicomveil.cli.common import err_console, fail, notice
from dicomveil.errors import ConfigError
from dicomveil.home import state_home

__all__ = ["register", "viewer_app"]

viewer_app = typer.Typer(
    help="The built-in OHIF Viewer (served at /viewer/).", no_args_is_help=True
)


@viewer_app.command("install")
def install(
    version: str | None = typer.Option(
        None, "--version", help="The @ohif/app version (default: the pinned, tested one)."
    ),
    registry: str | None = typer.Option(
        None,
        "--registry",
        help="npm registry URL (default: $DICOMVEIL_NPM_REGISTRY or registry.npmjs.org).",
    ),
    tarball: Path | None = typer.Option(
        None,
        "--from-file",
        exists=True,
        dir_okay=False,
        help="A package already fetched with `npm pack @ohif/app@VERSION` (still checked).",
    ),
    with_microscopy: bool = typer.Option(
        False, "--with-microscopy", help="Keep the slide microscopy viewer."
    ),
) -> None:
    """Fetch, check and install the viewer; `serve` then shows it at /viewer/."""
    from dicomveil.viewer import DEFAULT_REGISTRY, PINNED_VERSION, install_viewer

    home = state_home()
    try:
        info = install_viewer(
            home,
            version=version or PINNED_VERSION,
            registry=registry or os.environ.get("DICOMVEIL_NPM_REGISTRY") or DEFAULT_REGISTRY,
            tarball=tarball,
            with_microscopy=with_microscopy,
            notice=notice,
        )
    except ConfigError as exc:
        fail(str(exc))
    err_console.print(
        f"installed {info.package}@{info.version} ({info.integrity[:19]}...) in {home / 'viewer'}; "
        f"left out: {', '.join(info.pruned) or 'nothing'}. Licence: {home / 'viewer' / 'LICENSE'}"
    )


@viewer_app.command("status")
def status() -> None:
    """Print the installed viewer's record as JSON (exit 1 when none is installed)."""
    from dicomveil.viewer import installed_viewer

    info = installed_viewer(state_home())
    if info is None:
        err_console.print("no viewer installed: run `dicomveil viewer install`")
        raise typer.Exit(1)
    from dataclasses import asdict

    typer.echo(json.dumps(asdict(info), indent=1))


def register(app: typer.Typer) -> None:
    """Add the ``viewer`` command group to ``app``."""
    app.add_typer(viewer_app, name="viewer")
