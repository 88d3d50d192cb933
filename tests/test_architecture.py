"""The import contract (issue #12): edges never import each other, the core never imports an
edge, the engine never imports the reader or the storage backends. The contracts live in
pyproject.toml (``[tool.importlinter]``); a new import that breaks one fails here, in CI."""

from __future__ import annotations

from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def test_the_queue_worker_is_an_edge_and_cluster_is_core() -> None:
    """``dicomveil.worker`` (issue #15) is checked like the other edges; ``dicomveil.cluster``
    (what the edges share to enqueue) like the rest of the core."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    edges, core = contracts["contracts"][0], contracts["contracts"][1]
    assert "dicomveil.worker" in edges["modules"]
    assert "dicomveil.cluster" in core["source_modules"]
    assert "dicomveil.worker" in core["forbidden_modules"]
