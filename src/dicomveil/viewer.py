"""``dicomveil viewer install``: the OHIF Viewer build from the npm registry, checked and pruned.

The npm package ``@ohif/app`` carries a production build in ``package/dist``. It is fetched
from the registry over HTTPS (no npm needed), checked against the registry's published
``dist.integrity`` (SHA-512; for the pinned version also against the hash recorded here, so
a registry that serves something else is caught), and unpacked under
``$DICOMVEIL_HOME/viewer``:

- what plain viewing never loads is left out: the AI runtime ``ort/`` (136 MB), the
  microscopy viewer (unless asked), the service worker (it would precache all of it);
- the build's absolute base path ``/`` is rebuilt as ``/viewer/`` (webpack's public path in
  the bundles, ``url(/...)`` in the style sheets, ``src``/``href`` in ``index.html``), so
  the viewer lives under ``/viewer/`` and leaves every other path of the server alone;
- OHIF's ``LICENSE`` (MIT) is kept beside it, with ``dicomveil-viewer.json`` recording the
  version, the integrity and what was pruned.

Unpacking refuses links, absolute paths and ``..``; the new tree replaces the old one only
when complete. This module imports no web framework.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Final
from urllib.parse import quote

from dicomveil.errors import ConfigError

__all__ = [
    "BASE_PATH",
    "DEFAULT_REGISTRY",
    "INFO_FILE",
    "PACKAGE",
    "PINNED",
    "PINNED_VERSION",
    "Installed",
    "install_viewer",
    "installed_viewer",
    "viewer_folder",
]

PACKAGE: Final = "@ohif/app"
PINNED_VERSION: Final = "3.13.2"
PINNED: Final = {
    "3.13.2": "sha512-"
    "WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA==",
}
"""Integrity (SRI, SHA-512) of the versions this release was tested with."""

DEFAULT_REGISTRY: Final = "https://registry.npmjs.org"
INFO_FILE: Final = "dicomveil-viewer.json"
BASE_PATH: Final = "/viewer/"
_DIST: Final = "package/dist/"
_LICENSE: Final = "package/LICENSE"
_NEVER: Final = ("ort/", "sw.js", "init-service-worker.js", "_redirects", "_headers", "serve.json")
_MICROSCOPY: Final = "dicom-microscopy-viewer/"
_PUBLIC_PATH: Final = re.compile(rb'(__webpack_require__\.p\s*=\s*)"/"')
_CSS_URL: Final = re.compile(rb"url\(/(?!/)")
_HTML_PATH: Final = re.compile(rb'((?:src|href)=")/(?!/)')
_SERVICE_WORKER: Final = re.compile(rb"<script[^>]*init-service-worker\.js[^>]*></script>")
_CHUNK: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class Installed:
    """What ``dicomveil-viewer.json`` records about an installed viewer."""

    package: str
    version: str
    integrity: str
    installed_at: str
    pruned: list[str]
    base_path: str = BASE_PATH


def viewer_folder(home: Path) -> Path:
    """Where the viewer of the state folder ``home`` is installed."""
    return Path(home) / "viewer"


def installed_viewer(home: Path) -> Installed | None:
    """The installed viewer's record, or ``None`` when there is none (or it is incomplete)."""
    folder = viewer_folder(home)
    try:
        data = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
        info = Installed(**data)
    except (OSError, ValueError, TypeError):
        return None
    return info if (folder / "dist" / "index.html").is_file() else None


Fetch = Callable[[str], IO[bytes]]


def _fetch(url: str) -> IO[bytes]:
    if not url.startswith("https://") and not url.startswith("http://127.0.0.1"):
        raise ConfigError("the npm registry must be reached over https")
    request = urllib.request.Request(url, headers={"Accept": "application/json, */*"})
    response: IO[bytes] = urllib.request.urlopen(request, timeout=60)  # noqa: S310 - https only
    return response


def published(version: str, registry: str, fetch: Fetch = _fetch) -> tuple[str, str]:
    """The registry's (tarball URL, integrity) of ``@ohif/app@version``.

    Raises
    ------
    ConfigError
        The registry cannot be reached, knows no such version, or publishes no SHA-512.
    """
    url = f"{registry.rstrip('/')}/{quote(PACKAGE, safe='@')}/{quote(version)}"
    try:
        with fetch(url) as answer:
            meta = json.loads(answer.read())
    except OSError as exc:
        raise ConfigError(f"the npm registry cannot be reached ({type(exc).__name__})") from None
    except ValueError:
        raise ConfigError("the npm registry's answer is not JSON") from None
    dist = meta.get("dist") if isinstance(meta, dict) else None
    if not isinstance(dist, dict) or not str(dist.get("integrity", "")).startswith("sha512-"):
        raise ConfigError(f"the registry publishes no SHA-512 integrity for {PACKAGE}@{version}")
    return str(dist["tarball"]), str(dist["integrity"])


def _integrity(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return "sha512-" + base64.b64encode(digest.digest()).decode("ascii")


def _download(url: str, target: Path, fetch: Fetch) -> None:
    try:
        with fetch(url) as answer, target.open("wb") as out:
            shutil.copyfileobj(answer, out, _CHUNK)
    except OSError as exc:
        raise ConfigError(
            f"the viewer package cannot be downloaded ({type(exc).__name__})"
        ) from None


def _destination(name: str, with_microscopy: bool) -> str | None:
    """Where a tar member goes inside the install (``None``: left out)."""
    if name == _LICENSE:
        return "LICENSE"
    if not name.startswith(_DIST):
        return None
    inner = name[len(_DIST) :]
    if not inner or inner.startswith(_NEVER) or inner in _NEVER:
        return None
    if inner.startswith(_MICROSCOPY) and not with_microscopy:
        return None
    return "dist/" + inner


def _safe(relative: str) -> bool:
    path = PurePosixPath(relative)
    return not path.is_absolute() and ".." not in path.parts


def _rebase(path: Path, relative: str) -> None:
    """Move the build's absolute base path ``/`` to :data:`BASE_PATH`."""
    if relative.count("/") != 1:  # only the top-level bundles, style sheets and page
        return
    data = original = path.read_bytes()
    base = BASE_PATH.encode()
    if relative.endswith(".js"):
        data = _PUBLIC_PATH.sub(lambda m: m.group(1) + b'"' + base + b'"', data)
    elif relative.endswith(".css"):
        data = _CSS_URL.sub(b"url(" + base, data)
    elif relative == "dist/index.html":
        data = _SERVICE_WORKER.sub(b"", data)
        data = _HTML_PATH.sub(lambda m: m.group(1) + base, data)
        data = data.replace(b'window.PUBLIC_URL="/"', b'window.PUBLIC_URL="' + base + b'"')
    if data != original:
        path.write_bytes(data)


def _unpack(tarball: Path, folder: Path, with_microscopy: bool) -> list[str]:
    """Unpack what is kept into ``folder``; return the top-level names left out."""
    pruned: set[str] = set()
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            relative = _destination(member.name, with_microscopy)
            if relative is None:
                if member.name.startswith(_DIST):
                    pruned.add(member.name[len(_DIST) :].split("/")[0])
                continue
            if not _safe(relative) or not (member.isfile() or member.isdir()):
                raise ConfigError("the viewer package holds a link or an unsafe path")
            target = folder / relative
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            assert source is not None
            with source, target.open("wb") as out:
                shutil.copyfileobj(source, out, _CHUNK)
            _rebase(target, relative)
    if not (folder / "dist" / "index.html").is_file():
        raise ConfigError(f"the package is not a build of {PACKAGE} (no dist/index.html)")
    return sorted(pruned)


def install_viewer(
    home: Path,
    *,
    version: str = PINNED_VERSION,
    registry: str = DEFAULT_REGISTRY,
    tarball: Path | None = None,
    with_microscopy: bool = False,
    fetch: Fetch = _fetch,
    notice: Callable[[str], None] = lambda _m: None,
) -> Installed:
    """Fetch, check, prune and install ``@ohif/app@version`` under ``home``/viewer.

    Parameters
    ----------
    tarball:
        An already downloaded package (``npm pack @ohif/app@VERSION``); still checked,
        against the pinned hash (or the registry's for another version).

    Raises
    ------
    ConfigError
        Unreachable registry, unknown version, a hash that does not match, an unsafe
        package.
    """
    if not re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?", version):
        raise ConfigError("a viewer version is MAJOR.MINOR.PATCH")
    expected = PINNED.get(version)
    url = ""
    if tarball is None or expected is None:
        url, listed = published(version, registry, fetch)
        if expected is not None and listed != expected:
            raise ConfigError(
                f"the registry's integrity of {PACKAGE}@{version} differs from the pinned one"
            )
        expected = listed
    folder = viewer_folder(home)
    folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    work = Path(tempfile.mkdtemp(prefix=".viewer-", dir=folder.parent))
    try:
        package = tarball
        if package is None:
            notice(f"downloading {PACKAGE}@{version}")
            package = work / "package.tgz"
            _download(url, package, fetch)
        if _integrity(package) != expected:
            raise ConfigError(f"{PACKAGE}@{version}: the package does not match its integrity")
        tree = work / "viewer"
        tree.mkdir()
        pruned = _unpack(package, tree, with_microscopy)
        info = Installed(
            PACKAGE, version, expected, datetime.now(UTC).isoformat(timespec="seconds"), pruned
        )
        (tree / INFO_FILE).write_text(json.dumps(asdict(info), indent=1), encoding="utf-8")
        old = work / "old"
        if folder.exists():
            os.replace(folder, old)
        os.replace(tree, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return info
