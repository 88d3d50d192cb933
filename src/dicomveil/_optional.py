"""Import optional dependencies on demand, with an error that says how to install them.

Adapters at the edges (cloud storage, web, DIMSE) import their SDK through :func:`require`
inside the adapter module, never at the top of a module that the core imports. When the SDK is
missing, or older than the specifier declared in dicomveil's own package metadata, the user
gets a :class:`~dicomveil.errors.ConfigError` naming the exact ``pip install`` command.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
from types import ModuleType

from dicomveil.errors import ConfigError

__all__ = ["require"]

_REQUIREMENT = re.compile(
    r"""^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?P<spec>[^;]*?)\s*
        (?:;\s*extra\s*==\s*["'](?P<extra>[^"']+)["']\s*)?$""",
    re.VERBOSE,
)
_CLAUSE = re.compile(r"^(?P<op>>=|<=|==|!=|>|<)\s*(?P<version>[0-9][0-9.]*)$")


def require(
    module: str, feature: str, extra: str, *, distribution: str | None = None
) -> ModuleType:
    """Import ``module`` or raise a :class:`~dicomveil.errors.ConfigError` naming the extra.

    Parameters
    ----------
    module
        Dotted name of the module to import, for example ``"azure.storage.blob"``.
    feature
        What needs it, in words, for the message (``"s3:// storage"``).
    extra
        The dicomveil extra that installs it (``"s3"``), named in the message as
        ``pip install 'dicomveil[s3]'``.
    distribution
        The distribution (PyPI project) that provides ``module``. Defaults to ``module`` with
        dots replaced by dashes (``azure.storage.blob`` is provided by ``azure-storage-blob``).

    Returns
    -------
    ModuleType
        The imported module.

    Raises
    ------
    ConfigError
        When the module cannot be imported, or when the installed distribution is older than
        the specifier that dicomveil declares for ``extra`` (checked only when dicomveil's own
        metadata is available, that is when it is installed, even in editable mode).
    """
    dist = distribution or module.replace(".", "-")
    try:
        imported = importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"{feature} needs the {dist!r} package, which is not installed: "
            f"pip install 'dicomveil[{extra}]'"
        ) from exc
    spec = _declared_specifier(dist, extra)
    installed = _installed_version(dist)
    if spec and installed and not _satisfies(installed, spec):
        raise ConfigError(
            f"{feature} needs {dist}{spec} but {installed} is installed: "
            f"pip install --upgrade 'dicomveil[{extra}]'"
        )
    return imported


def _declared_specifier(dist: str, extra: str) -> str | None:
    """Return the version specifier dicomveil declares for ``dist`` in ``extra``, if any."""
    try:
        requirements = importlib.metadata.requires("dicomveil") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    wanted = _normalize(dist)
    for line in requirements:
        match = _REQUIREMENT.match(line)
        if match and _normalize(match["name"]) == wanted and match["extra"] == extra:
            return match["spec"] or None
    return None


def _installed_version(dist: str) -> str | None:
    """Return the installed version of ``dist``, or ``None`` when it has no metadata."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _normalize(name: str) -> str:
    """Normalize a distribution name the way PEP 503 does."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _release(version: str) -> tuple[int, ...]:
    """Return the numeric release part of ``version`` (``"2.0.0rc1"`` gives ``(2, 0, 0)``)."""
    numbers = re.match(r"\d+(?:\.\d+)*", version)
    parts = tuple(int(part) for part in numbers[0].split(".")) if numbers else (0,)
    while len(parts) > 1 and parts[-1] == 0:
        parts = parts[:-1]
    return parts


def _satisfies(version: str, spec: str) -> bool:
    """Return whether ``version`` meets every clause of ``spec`` that we understand.

    Only plain comparison clauses on release numbers are checked (``>=1.34``, ``<4``);
    anything fancier is accepted rather than guessed at.
    """
    have = _release(version)
    for clause in spec.split(","):
        match = _CLAUSE.match(clause.strip())
        if not match:
            continue
        want = _release(match["version"])
        ok = {
            ">=": have >= want,
            "<=": have <= want,
            ">": have > want,
            "<": have < want,
            "==": have == want,
            "!=": have != want,
        }[match["op"]]
        if not ok:
            return False
    return True
