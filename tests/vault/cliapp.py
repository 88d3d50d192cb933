"""A Typer app built from the register functions under test (the real one is cli/main.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from dicomveil.cli import audit, reidentify, vault

KEY_VARIABLES = (
    "DICOMVEIL_KEY",
    "DICOMVEIL_VAULT_KEY",
    "DICOMVEIL_AUDIT_KEY",
    "DICOMVEIL_VAULT_URL",
)


def make_app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    for module in (reidentify, audit, vault):
        module.register(app)
    keys_app = typer.Typer()
    vault.register_key_commands(keys_app)
    app.add_typer(keys_app, name="keys")
    return app


def isolate(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Point ``$DICOMVEIL_HOME`` at ``home`` and hide any key from the environment."""
    monkeypatch.setenv("DICOMVEIL_HOME", str(home))
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)


def run(*args: str | Path, app: typer.Typer | None = None) -> Result:
    argv: Sequence[str] = [str(a) for a in args]
    return CliRunner().invoke(app or make_app(), list(argv), catch_exceptions=False)
