"""The import contract (issue #12): edges never import each other, the core never imports an
edge, the engine never imports the reader or the storage backends. The contracts live in
pyproject.toml (``[tool.importlinter]``); a new import that breaks one fails here, in CI."""

from __future__ import annotations

from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0
