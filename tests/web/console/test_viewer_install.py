"""``viewer install`` and ``/viewer/`` with a small package built like ``@ohif/app``'s.

The real package is exercised by ``test_viewer_browser.py``; here a synthetic one pins the
integrity checks, the pruning, the base-path rebuild, the unsafe-member refusal and the
serving rules (cache headers, SPA fallback, login, CSP, generated config).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest
from fastapi import FastAPI

from dicomveil import viewer as install
from dicomveil.cli.main import main
from dicomveil.errors import ConfigError
from dicomveil.viewer import install_viewer, installed_viewer
from dicomveil.web import Settings, create_app
from dicomveil.web.viewer.serve import app_config

INDEX = (
    b'<!doctype html><html><head><script>window.PUBLIC_URL="/"</script>'
    b'<script src="/app-config.js"></script>'
    b'<script type="module" src="/init-service-worker.js"></script>'
    b'<link href="/app.bundle.css" rel="stylesheet">'
    b'<script defer src="/app.bundle.0123456789abcdef.js"></script></head>'
    b'<body><div id="root"></div></body></html>'
)
FILES = {
    "package/LICENSE": b"MIT License\n\nCopyright (c) Open Health Imaging Foundation\n",
    "package/package.json": b'{"name": "@ohif/app"}',
    "package/dist/index.html": INDEX,
    "package/dist/app-config.js": b"window.config = {dataSources: []};",
    "package/dist/app.bundle.0123456789abcdef.js": b'x;__webpack_require__.p = "/";y',
    "package/dist/app.bundle.css": b"@font-face{src:url(/a34f9d1faa5f3315.woff2)}",
    "package/dist/a34f9d1faa5f3315.woff2": b"font",
    "package/dist/assets/favicon.ico": b"icon",
    "package/dist/ort/ort.wasm": b"A" * 1000,
    "package/dist/dicom-microscopy-viewer/viewer.js": b"microscopy",
    "package/dist/sw.js": b"self.precache()",
    "package/dist/init-service-worker.js": b"navigator.serviceWorker",
}


def package(
    files: dict[str, bytes], extra: Callable[[tarfile.TarFile], None] | None = None
) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if extra:
            extra(archive)
    return out.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


class Registry:
    """A fake registry answering metadata and tarball requests from memory."""

    def __init__(self, tarball: bytes, published: str | None = None) -> None:
        self.tarball = tarball
        self.published = published or integrity(tarball)
        self.urls: list[str] = []

    def __call__(self, url: str) -> IO[bytes]:
        self.urls.append(url)
        if url.endswith(".tgz"):
            return io.BytesIO(self.tarball)
        meta = {"dist": {"integrity": self.published, "tarball": "https://r.test/app-9.9.9.tgz"}}
        return io.BytesIO(json.dumps(meta).encode())


def test_install_checks_prunes_and_rebases(tmp_path: Path) -> None:
    registry = Registry(package(FILES))
    info = install_viewer(tmp_path, version="9.9.9", registry="https://r.test", fetch=registry)
    assert registry.urls == ["https://r.test/@ohif%2Fapp/9.9.9", "https://r.test/app-9.9.9.tgz"]
    dist = tmp_path / "viewer" / "dist"
    assert (tmp_path / "viewer" / "LICENSE").read_bytes().startswith(b"MIT License")
    assert not (dist / "ort").exists() and not (dist / "dicom-microscopy-viewer").exists()
    assert not (dist / "sw.js").exists() and not (dist / "init-service-worker.js").exists()
    assert info.pruned == ["dicom-microscopy-viewer", "init-service-worker.js", "ort", "sw.js"]
    index = (dist / "index.html").read_bytes()
    assert b'window.PUBLIC_URL="/viewer/"' in index
    assert b'src="/viewer/app.bundle.0123456789abcdef.js"' in index
    assert b"init-service-worker" not in index
    bundle = (dist / "app.bundle.0123456789abcdef.js").read_bytes()
    assert bundle == b'x;__webpack_require__.p = "/viewer/";y'
    assert (
        dist / "app.bundle.css"
    ).read_bytes() == b"@font-face{src:url(/viewer/a34f9d1faa5f3315.woff2)}"
    assert installed_viewer(tmp_path) == info
    with_microscopy = install_viewer(
        tmp_path, version="9.9.9", registry="https://r.test", fetch=registry, with_microscopy=True
    )
    assert (dist / "dicom-microscopy-viewer" / "viewer.js").is_file()
    assert "dicom-microscopy-viewer" not in with_microscopy.pruned


def test_a_package_that_does_not_match_its_integrity_is_refused(tmp_path: Path) -> None:
    registry = Registry(package(FILES), published=integrity(b"something else"))
    with pytest.raises(ConfigError, match="does not match its integrity"):
        install_viewer(tmp_path, version="9.9.9", registry="https://r.test", fetch=registry)
    assert installed_viewer(tmp_path) is None
    assert not any(p.name.startswith(".viewer-") for p in tmp_path.iterdir())


def test_the_pinned_version_is_checked_against_the_pinned_hash(tmp_path: Path) -> None:
    tarball = tmp_path / "app.tgz"
    tarball.write_bytes(package(FILES))
    with pytest.raises(ConfigError, match="does not match"):
        install_viewer(tmp_path, tarball=tarball)  # pinned version: no registry asked
    lying = Registry(package(FILES))  # publishes the hash of what it serves
    with pytest.raises(ConfigError, match="differs from the pinned one"):
        install_viewer(tmp_path, version=install.PINNED_VERSION, fetch=lying)


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "parent"])
def test_unsafe_members_are_refused(tmp_path: Path, kind: str) -> None:
    def add(archive: tarfile.TarFile) -> None:
        if kind in ("symlink", "hardlink"):
            info = tarfile.TarInfo("package/dist/assets/link")
            info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
            info.linkname = "/etc/passwd"
            archive.addfile(info)
        else:
            info = tarfile.TarInfo("package/dist/../../evil")
            info.size = 1
            archive.addfile(info, io.BytesIO(b"x"))

    registry = Registry(package(FILES, add))
    with pytest.raises(ConfigError, match="unsafe"):
        install_viewer(tmp_path, version="9.9.9", registry="https://r.test", fetch=registry)
    assert not (tmp_path.parent / "evil").exists() and installed_viewer(tmp_path) is None


def test_bad_versions_and_registries_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MAJOR.MINOR.PATCH"):
        install_viewer(tmp_path, version="../1")
    with pytest.raises(ConfigError, match="https"):
        install_viewer(tmp_path, version="9.9.9", registry="http://registry.example")


def test_cli_install_from_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DICOMVEIL_HOME", str(tmp_path / "home"))
    tarball = tmp_path / "app.tgz"
    tarball.write_bytes(package(FILES))
    # a version that is not pinned needs the registry's hash: refuse when it cannot be had
    monkeypatch.setenv("DICOMVEIL_NPM_REGISTRY", "http://registry.example")
    assert main(["viewer", "install", "--version", "9.9.9", "--from-file", str(tarball)]) == 2
    assert main(["viewer", "status"]) == 1


@pytest.fixture
def viewer_app(home: Path, key_file: Path) -> Iterator[FastAPI]:
    registry = Registry(package(FILES))
    install_viewer(home, version="9.9.9", registry="https://r.test", fetch=registry)
    application = create_app(Settings(home=home, key_file=key_file, deid_processes=1))
    try:
        yield application
    finally:
        application.state.services.close()


@pytest.mark.anyio
async def test_viewer_serving(viewer_app: FastAPI, tokens: dict[str, str]) -> None:
    transport = httpx.ASGITransport(app=viewer_app)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        assert (await c.get("/viewer")).headers["location"] == "/viewer/"
        config = await c.get("/viewer/app-config.js")
        assert config.headers["cache-control"] == "no-cache"
        assert "dvt_" not in config.text and '"qidoRoot": "/dicomweb"' in config.text
        assert '"routerBasename": "/viewer"' in config.text
        bundle = await c.get("/viewer/app.bundle.0123456789abcdef.js")
        assert bundle.status_code == 200
        assert bundle.headers["cache-control"] == "public, max-age=31536000, immutable"
        css = await c.get("/viewer/app.bundle.css")
        assert css.headers["cache-control"] == "no-cache"
        assert (await c.get("/viewer/missing.js")).status_code == 404
        assert (await c.get("/viewer/..%2F..%2Ftokens.json")).status_code == 404
        # the app's routes need a session: without one, the login page
        page = await c.get("/viewer/viewer?StudyInstanceUIDs=1.2.3")
        assert page.status_code == 303 and page.headers["location"] == "/console/login"
        await c.post("/console/login", data={"token": tokens["read"]})
        page = await c.get("/viewer/viewer?StudyInstanceUIDs=1.2.3")
        assert (
            page.status_code == 200
            and page.content == (await c.get("/viewer/studies/list")).content
        )
        csp = page.headers["content-security-policy"]
        inline = re.findall(rb"<script>(.*?)</script>", page.content)
        for body in inline:
            digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
            assert f"'sha256-{digest}'" in csp
        assert "'unsafe-eval'" not in csp and "'unsafe-inline'" not in csp.split("style-src")[0]
        big = await c.get("/viewer/viewer", headers={"Accept-Encoding": "gzip"})
        assert big.status_code == 200


def test_app_config_is_javascript_without_a_token() -> None:
    text = app_config()
    assert text.count("window.config = ") == 1
    config = json.loads(text.split("window.config = ", 1)[1].rstrip().rstrip(";"))
    source = config["dataSources"][0]["configuration"]
    assert source["wadoRoot"] == source["qidoRoot"] == "/dicomweb"
    assert source["acceptHeader"][0] == "multipart/related; type=image/jpeg"
    assert source["thumbnailRendering"] == "thumbnail"
