"""Error mapping at the adapter boundary: SDK exceptions never leave an adapter."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from dicomveil.errors import (
    ConfigError,
    ObjectNotFound,
    Retryable,
    StorageError,
    StorageUnavailable,
)
from dicomveil.ports import BlobStore
from dicomveil.storage import open_store
from tests.storage.conftest import AWS_OPTIONS, azurite_connection_string, require_module
from tests.support.servers import free_port

SERVER_TEXT = "server-said-SECRET"

pytestmark = pytest.mark.cloud


def mapped(mapper: Callable[[str], Any], exc: Exception) -> BaseException:
    """Raise ``exc`` inside ``mapper`` and return what came out."""
    with pytest.raises(BaseException) as raised, mapper("get s3://b/k"):
        raise exc
    assert SERVER_TEXT not in str(raised.value)
    return raised.value


class TestS3Mapping:
    @pytest.fixture(autouse=True)
    def _sdk(self) -> None:
        require_module("boto3", "boto3")

    @staticmethod
    def client_error(code: str, status: int) -> Exception:
        from botocore.exceptions import ClientError

        response: Any = {
            "Error": {"Code": code, "Message": SERVER_TEXT},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        error: Exception = ClientError(response, "GetObject")
        return error

    @pytest.mark.parametrize(
        ("code", "status", "expected"),
        [
            ("NoSuchKey", 404, ObjectNotFound),
            ("404", 404, ObjectNotFound),
            ("NoSuchBucket", 404, StorageError),
            ("SlowDown", 503, StorageUnavailable),
            ("InternalError", 500, StorageUnavailable),
            ("AccessDenied", 403, StorageError),
            ("InvalidArgument", 400, StorageError),
        ],
    )
    def test_client_errors(self, code: str, status: int, expected: type[Exception]) -> None:
        from dicomveil.storage.s3 import map_s3_errors

        original = self.client_error(code, status)
        error = mapped(map_s3_errors, original)
        assert type(error) is expected
        assert error.__cause__ is original
        assert isinstance(error, Retryable) == (expected is StorageUnavailable)

    def test_upload_failure_is_unwrapped(self) -> None:
        from boto3.exceptions import S3UploadFailedError

        from dicomveil.storage.s3 import map_s3_errors

        try:
            try:
                raise self.client_error("SlowDown", 503)
            except Exception as inner:
                raise S3UploadFailedError(f"Failed: {SERVER_TEXT}") from inner
        except S3UploadFailedError as outer:
            assert type(mapped(map_s3_errors, outer)) is StorageUnavailable

    @pytest.mark.parametrize(
        ("factory", "expected"),
        [
            (lambda sdk: sdk.NoCredentialsError(), ConfigError),
            (lambda sdk: sdk.ProfileNotFound(profile="nope"), ConfigError),
            (lambda sdk: sdk.EndpointConnectionError(endpoint_url="http://x"), StorageUnavailable),
            (lambda sdk: sdk.ReadTimeoutError(endpoint_url="http://x"), StorageUnavailable),
            (lambda sdk: sdk.DataNotFoundError(data_path="x"), StorageError),
        ],
    )
    def test_botocore_errors(self, factory: Callable[[Any], Exception], expected: type) -> None:
        from botocore import exceptions

        from dicomveil.storage.s3 import map_s3_errors

        assert type(mapped(map_s3_errors, factory(exceptions))) is expected

    def test_unknown_profile_fails_at_open(self) -> None:
        with pytest.raises(ConfigError, match="ProfileNotFound"):
            open_store("s3://my-bucket", profile_name="no-such-profile-dicomveil")


class TestAzureMapping:
    @pytest.fixture(autouse=True)
    def _sdk(self) -> None:
        require_module("azure.storage.blob", "azure-storage-blob")

    @staticmethod
    def service_error(cls_name: str, status: int | None, code: str | None) -> Exception:
        from azure.core import exceptions

        error: Any = getattr(exceptions, cls_name)(message=SERVER_TEXT)
        error.status_code = status
        error.error_code = code
        return error  # type: ignore[no-any-return]

    @pytest.mark.parametrize(
        ("cls_name", "status", "code", "expected"),
        [
            ("ResourceNotFoundError", 404, "BlobNotFound", ObjectNotFound),
            ("ResourceNotFoundError", 404, "ContainerNotFound", StorageError),
            ("HttpResponseError", 503, "ServerBusy", StorageUnavailable),
            ("HttpResponseError", 429, None, StorageUnavailable),
            ("HttpResponseError", 400, "InvalidHeaderValue", StorageError),
            ("ServiceRequestError", None, None, StorageUnavailable),
            ("ServiceResponseError", None, None, StorageUnavailable),
            ("ClientAuthenticationError", None, None, ConfigError),
            ("AzureError", None, None, StorageError),
        ],
    )
    def test_errors(
        self, cls_name: str, status: int | None, code: str | None, expected: type
    ) -> None:
        from dicomveil.storage.azure import map_azure_errors

        assert (
            type(mapped(map_azure_errors, self.service_error(cls_name, status, code))) is expected
        )


class TestGcsMapping:
    @pytest.fixture(autouse=True)
    def _sdk(self) -> None:
        require_module("google.cloud.storage", "google-cloud-storage")

    @pytest.mark.parametrize(
        ("factory", "expected"),
        [
            (lambda api, auth, rq: api.NotFound(SERVER_TEXT), ObjectNotFound),
            (lambda api, auth, rq: api.ServiceUnavailable(SERVER_TEXT), StorageUnavailable),
            (lambda api, auth, rq: api.TooManyRequests(SERVER_TEXT), StorageUnavailable),
            (lambda api, auth, rq: api.Forbidden(SERVER_TEXT), StorageError),
            (lambda api, auth, rq: api.BadRequest(SERVER_TEXT), StorageError),
            (lambda api, auth, rq: auth.DefaultCredentialsError(SERVER_TEXT), ConfigError),
            (lambda api, auth, rq: auth.TransportError(SERVER_TEXT), StorageUnavailable),
            (lambda api, auth, rq: rq.ConnectionError(SERVER_TEXT), StorageUnavailable),
            (lambda api, auth, rq: rq.Timeout(SERVER_TEXT), StorageUnavailable),
        ],
    )
    def test_errors(self, factory: Callable[..., Exception], expected: type) -> None:
        import requests
        from google.api_core import exceptions as api
        from google.auth import exceptions as auth

        from dicomveil.storage.gcs import map_gcs_errors

        assert type(mapped(map_gcs_errors, factory(api, auth, requests))) is expected


class TestPassThrough:
    def test_programming_errors_are_not_mapped(self) -> None:
        from dicomveil.storage.file import map_os_errors

        with pytest.raises(KeyError), map_os_errors("get x"):
            raise KeyError("bug")

    def test_plain_network_errors_are_unavailable(self) -> None:
        require_module("boto3", "boto3")
        from dicomveil.storage.s3 import map_s3_errors

        assert type(mapped(map_s3_errors, ConnectionRefusedError(SERVER_TEXT))) is (
            StorageUnavailable
        )


def _dead_s3(port: int) -> BlobStore:
    require_module("boto3", "boto3")
    return open_store(
        "s3://dead-bucket",
        endpoint_url=f"http://127.0.0.1:{port}",
        retries=1,
        timeout=1,
        **AWS_OPTIONS,
    )


def _dead_azure(port: int) -> BlobStore:
    require_module("azure.storage.blob", "azure-storage-blob")
    return open_store(
        "az://dead-container",
        connection_string=azurite_connection_string(port),
        retries=1,
        timeout=1,
    )


def _dead_gcs(port: int) -> BlobStore:
    require_module("google.cloud.storage", "google-cloud-storage")
    return open_store(
        "gs://dead-bucket", endpoint_url=f"http://127.0.0.1:{port}", retries=1, timeout=1
    )


class TestDeadEndpoint:
    @pytest.mark.parametrize("factory", [_dead_s3, _dead_azure, _dead_gcs], ids=["s3", "az", "gs"])
    def test_dead_endpoint_is_unavailable_quickly(
        self, factory: Callable[[int], BlobStore]
    ) -> None:
        store = factory(free_port())
        started = time.monotonic()
        with pytest.raises(StorageUnavailable) as raised:
            store.get_bytes("a/b.dcm")
        assert isinstance(raised.value, Retryable)
        with pytest.raises(StorageUnavailable):
            store.put_bytes("a/b.dcm", b"x", content_type="application/dicom", metadata={"k": "v"})
        assert time.monotonic() - started < 10
        assert raised.value.__cause__ is not None  # the SDK's exception, kept for tracebacks
