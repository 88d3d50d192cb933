"""open_store: URL to adapter, URL validation, options, from_settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dicomveil.errors import ConfigError
from dicomveil.storage import (
    AzureBlobStore,
    FileBlobStore,
    GcsBlobStore,
    MemoryBlobStore,
    S3BlobStore,
    open_store,
    parse_store_url,
)
from tests.storage.conftest import AWS_OPTIONS, azurite_connection_string, require_module


class TestLocalUrls:
    def test_plain_absolute_path_is_a_file_store(self, tmp_path: Path) -> None:
        store = open_store(str(tmp_path / "out"))
        assert isinstance(store, FileBlobStore)
        assert store.root == tmp_path / "out"
        assert store.url == (tmp_path / "out").as_uri()

    def test_relative_path_is_made_absolute(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        store = open_store("rel/out")
        assert isinstance(store, FileBlobStore)
        assert store.root == tmp_path / "rel" / "out"

    @pytest.mark.parametrize("form", ["file://{path}", "file://localhost{path}"])
    def test_file_urls(self, tmp_path: Path, form: str) -> None:
        store = open_store(form.format(path=tmp_path / "a b"), fsync=False)
        assert isinstance(store, FileBlobStore)
        assert store.root == tmp_path / "a b"

    def test_percent_encoded_file_url(self, tmp_path: Path) -> None:
        store = open_store((tmp_path / "a b").as_uri())
        assert isinstance(store, FileBlobStore)
        assert store.root == tmp_path / "a b"

    def test_memory_url_names_a_shared_store(self) -> None:
        first = open_store("memory://shared-test")
        second = open_store("memory://shared-test")
        assert isinstance(first, MemoryBlobStore)
        assert first is second
        assert open_store("memory://other-test") is not first
        assert first.url == "memory://shared-test"

    def test_scheme_is_case_insensitive(self) -> None:
        assert isinstance(open_store("MEMORY://x"), MemoryBlobStore)


@pytest.mark.cloud
class TestCloudUrls:
    def test_s3(self) -> None:
        require_module("boto3", "boto3")
        with open_store(
            "s3://my-bucket/some/prefix/", endpoint_url="http://127.0.0.1:9", **AWS_OPTIONS
        ) as store:
            assert isinstance(store, S3BlobStore)
            assert (store.bucket, store.prefix, store.url) == (
                "my-bucket",
                "some/prefix/",
                "s3://my-bucket/some/prefix/",
            )

    def test_azure_url_never_shows_the_credential(self) -> None:
        require_module("azure.storage.blob", "azure-storage-blob")
        sas = "sv=2024-01-01&sig=SECRETSIG"
        with open_store(
            "az://container-1", account_url=f"https://acct.blob.core.windows.net?{sas}"
        ) as store:
            assert isinstance(store, AzureBlobStore)
            assert store.url == "az://container-1/"
            assert "SECRET" not in repr(store)

    def test_azure_connection_string_from_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        require_module("azure.storage.blob", "azure-storage-blob")
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_connection_string(9))
        with open_store("az://container-1/p") as store:
            assert isinstance(store, AzureBlobStore)
            assert store._service.url.startswith("http://127.0.0.1:9/")

    def test_azure_without_any_account_is_a_config_error(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        require_module("azure.storage.blob", "azure-storage-blob")
        monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
        with pytest.raises(ConfigError, match="AZURE_STORAGE_CONNECTION_STRING"):
            open_store("az://container-1")

    def test_gcs_emulator_from_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        require_module("google.cloud.storage", "google-cloud-storage")
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:9")
        with open_store("gs://bucket_1.x/p") as store:
            assert isinstance(store, GcsBlobStore)
            assert store._client._connection.API_BASE_URL == "http://127.0.0.1:9"
            assert store.url == "gs://bucket_1.x/p/"

    def test_unknown_option_is_named(self) -> None:
        require_module("boto3", "boto3")
        with pytest.raises(ConfigError, match="endpoint_ur1.*known: .*endpoint_url"):
            open_store("s3://my-bucket", endpoint_ur1="http://x")

    @pytest.mark.parametrize(
        ("options", "match"),
        [
            ({"retries": -1}, "retries"),
            ({"part_size": 1024}, "part_size"),
            ({"timeout": 0}, "timeout"),
            ({"max_concurrency": True}, "max_concurrency"),
        ],
    )
    def test_bad_transfer_options(self, options: dict[str, Any], match: str) -> None:
        require_module("boto3", "boto3")
        with pytest.raises(ConfigError, match=match):
            open_store("s3://my-bucket", **options)

    @pytest.mark.parametrize(
        ("url", "options", "module"),
        [
            ("s3://my-bucket", {"endpoint_url": "not a url"}, "boto3"),
            ("s3://my-bucket", {"region_name": "bad region!"}, "boto3"),
            ("s3://my-bucket", {"addressing_style": "sideways"}, "boto3"),
            ("az://container-1", {"connection_string": "AccountKey=SECRET;garbage"}, "azure"),
            ("az://container-1", {"account_url": "not a url", "credential": "SECRET"}, "azure"),
        ],
    )
    def test_malformed_sdk_settings_are_config_errors(
        self, url: str, options: dict[str, Any], module: str
    ) -> None:
        require_module(module if module == "boto3" else "azure.storage.blob", module)
        with pytest.raises(ConfigError) as raised:
            open_store(url, **options)
        assert "SECRET" not in str(raised.value)

    def test_gcs_part_size_must_be_a_multiple_of_256k(self) -> None:
        require_module("google.cloud.storage", "google-cloud-storage")
        with pytest.raises(ConfigError, match="256 KiB"):
            open_store("gs://bucket", endpoint_url="http://127.0.0.1:9", part_size=6_000_000)


class TestBadUrls:
    @pytest.mark.parametrize(
        ("url", "match"),
        [
            ("", "non-empty"),
            ("   ", "non-empty"),
            ("ftp://host/x", "unknown storage URL scheme 'ftp'"),
            ("s3:bucket/x", "malformed"),
            ("s3://user:hunter2@bucket/x", "credentials"),
            ("s3://bucket:9000/x", "credentials or a port"),
            ("az://container?sig=hunter2", "query"),
            ("gs://bucket#frag", "query or fragment"),
            ("s3://Bad_Bucket", "bucket"),
            ("s3://b", "bucket"),
            ("az://double--dash", "bucket"),
            ("s3://bucket/a/../b", "prefix"),
            ("file://otherhost/x", "file:///"),
            ("memory://", "memory://name"),
            ("memory://a/b", "memory://name"),
        ],
    )
    def test_rejected_with_config_error(self, url: str, match: str) -> None:
        with pytest.raises(ConfigError, match=match) as raised:
            open_store(url)
        assert "hunter2" not in str(raised.value)

    def test_memory_store_takes_no_options(self) -> None:
        with pytest.raises(ConfigError, match="unknown option"):
            open_store("memory://x", fsync=True)

    def test_file_store_unknown_option(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="unknown option.*bogus.*known: create, fsync"):
            open_store(str(tmp_path), bogus=1)


class TestParse:
    def test_parse_store_url(self) -> None:
        parsed = parse_store_url("s3://bucket/a%20b/c")
        assert (parsed.scheme, parsed.netloc, parsed.path) == ("s3", "bucket", "a b/c")


@dataclass(frozen=True)
class Settings:
    url: str
    options: Mapping[str, Any] = field(default_factory=dict)


class TestFromSettings:
    def test_from_settings(self, tmp_path: Path) -> None:
        store = FileBlobStore.from_settings(Settings(str(tmp_path / "s"), {"fsync": False}))
        assert store.root == tmp_path / "s"

    def test_from_settings_checks_the_scheme(self) -> None:
        with pytest.raises(ConfigError, match="file:///"):
            FileBlobStore.from_settings(Settings("memory://x"))
