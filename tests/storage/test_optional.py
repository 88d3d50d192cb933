"""dicomveil._optional.require: missing or outdated optional dependencies."""

from __future__ import annotations

import importlib.metadata
import sys

import pytest

from dicomveil import _optional
from dicomveil._optional import require
from dicomveil.errors import ConfigError
from dicomveil.storage import open_store


class TestRequire:
    def test_returns_the_module(self) -> None:
        assert require("json", "JSON", "none") is sys.modules["json"]

    def test_missing_module_names_the_extra(self) -> None:
        with pytest.raises(ConfigError, match=r"pip install 'dicomveil\[s3\]'") as raised:
            require("dicomveil_no_such_module", "s3:// storage", "s3")
        assert isinstance(raised.value.__cause__, ImportError)

    @pytest.mark.parametrize(
        ("scheme", "module", "extra"),
        [
            ("s3", "boto3", "s3"),
            ("az", "azure.storage.blob", "azure"),
            ("gs", "google.cloud.storage", "gcs"),
        ],
    )
    def test_cloud_store_without_its_sdk(
        self, monkeypatch: pytest.MonkeyPatch, scheme: str, module: str, extra: str
    ) -> None:
        monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
        with pytest.raises(ConfigError, match=rf"pip install 'dicomveil\[{extra}\]'"):
            open_store(f"{scheme}://some-bucket")

    def test_outdated_version_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(_optional, "_declared_specifier", lambda dist, extra: ">=99.0,<100")
        monkeypatch.setattr(_optional, "_installed_version", lambda dist: "1.2.3")
        with pytest.raises(ConfigError, match=r"json>=99.0,<100 but 1.2.3.*--upgrade"):
            require("json", "JSON", "json")

    def test_declared_specifier_is_read_from_our_metadata(self) -> None:
        try:
            importlib.metadata.requires("dicomveil")
        except importlib.metadata.PackageNotFoundError:
            pytest.skip("dicomveil is not installed, so it has no metadata")
        assert _optional._declared_specifier("boto3", "s3") == ">=1.34"
        assert _optional._declared_specifier("Azure_Storage.Blob", "azure") == ">=12.19"
        assert _optional._declared_specifier("boto3", "gcs") is None

    @pytest.mark.parametrize(
        ("version", "spec", "ok"),
        [
            ("1.34.0", ">=1.34", True),
            ("1.33.9", ">=1.34", False),
            ("2.0.0rc1", ">=2", True),
            ("3.1", "<4,>=3.0", True),
            ("4.0", "<4,>=3.0", False),
            ("1.0", "~=1.0", True),  # not understood: accepted rather than guessed at
            ("1.0", "==1", True),
            ("1.0", "!=1.0.0", False),
        ],
    )
    def test_satisfies(self, version: str, spec: str, ok: bool) -> None:
        assert _optional._satisfies(version, spec) is ok
