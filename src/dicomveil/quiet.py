"""Keeping pydicom quiet about the values it reads: its warnings quote them (PHI)."""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

__all__ = ["quiet_pydicom"]


def quiet_pydicom() -> None:
    """Stop pydicom's validation warnings: they quote attribute values (PHI) on stderr.

    The one place dicomveil touches pydicom's global settings, called by process entry
    points only (the console script, the gateway, the gateway's engine processes), never by
    library code. Input problems are reported by dicomveil itself, by tag and keyword only.
    pydicom is not imported for this (``deid`` never imports it in its parent, only in its
    workers): the setting is applied when pydicom is first imported, here or in a forked
    worker.
    """
    import warnings

    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    config = sys.modules.get("pydicom.config")
    if config is not None:
        _ignore_validation(config)
    elif not any(isinstance(finder, _OnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _OnImport("pydicom.config", _ignore_validation))


def _ignore_validation(config: ModuleType) -> None:
    config.settings.reading_validation_mode = config.IGNORE


class _OnImport(importlib.abc.MetaPathFinder):
    """Calls ``callback(module)`` once the module ``name`` has been imported (one shot)."""

    def __init__(self, name: str, callback: Callable[[ModuleType], None]) -> None:
        self.name, self.callback = name, callback

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        loader = spec.loader if spec is not None else None
        if loader is None:
            return spec
        execute, callback = loader.exec_module, self.callback

        def exec_module(module: ModuleType) -> None:
            execute(module)
            callback(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec
