"""Stale direct uploads (#15): URLs expired, never completed. Their objects leave the incoming
store (moto S3, through the real adapter) and the upload is marked expired, at the gateway's
start and then periodically; a completed or still valid upload is left alone."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from dicomveil.pipeline.ingest import IngestResult, Origin
from dicomveil.storage import BaseBlobStore, open_store
from dicomveil.uploads.registry import EXPIRED, QUEUED
from dicomveil.uploads.service import UploadConflict, UploadService, object_key
from dicomveil.uploads.settings import UploadSettings
from tests.support.cloud import AWS_OPTIONS, BUCKET

PLANTED = b"DICM-STALE^UPLOAD^PLANTED"


class NoIngest:
    def ingest(self, files: list[Path], origin: Origin) -> list[IngestResult]:
        raise AssertionError("nothing is ingested here")


@pytest.fixture
def incoming(s3_endpoint: str) -> Iterator[BaseBlobStore]:
    prefix = f"stale-{uuid.uuid4().hex[:10]}"
    store = open_store(f"s3://{BUCKET}/{prefix}", endpoint_url=s3_endpoint, **AWS_OPTIONS)
    try:
        yield store
    finally:
        store.close()


def _service(store: BaseBlobStore, tmp_path: Path, **limits: int) -> UploadService:
    settings = UploadSettings(f"sqlite:///{tmp_path / 'uploads.sqlite'}", **limits)
    return UploadService(settings, store, NoIngest(), lambda: tmp_path, owns_incoming=False)


def _upload(service: UploadService, count: int = 2) -> str:
    """Open an upload and PUT every object through its signed URL (plain requests)."""
    new = service.create("token:uploader", count)
    for _, signed in new.urls:
        answer = requests.put(signed.url, data=PLANTED, headers=signed.headers, timeout=30)
        assert answer.status_code in (200, 201), answer.text
    return new.upload_id


def _keys(store: BaseBlobStore, upload_id: str) -> list[str]:
    return [info.key for info in store.list(object_key(upload_id, ""))]


def test_an_expired_upload_loses_its_objects_and_a_live_one_keeps_them(
    incoming: BaseBlobStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = _service(incoming, tmp_path, expires_seconds=60, stale_after_seconds=60)
    try:
        stale, completing = _upload(service), _upload(service)
        assert service.registry.start_completing(completing)  # handed on: not stale
        assert service.expire_stale() == 0  # URLs still valid
        assert len(_keys(incoming, stale)) == 2

        later = time.time() + 121
        assert service.expire_stale(now=later) == 1
        assert _keys(incoming, stale) == []
        assert len(_keys(incoming, completing)) == 2
        row = service.registry.get(stale)
        assert row is not None and row.state == EXPIRED
        assert {item.state for item in row.objects} == {EXPIRED}
        with pytest.raises(UploadConflict, match="expired"):
            service.complete(stale, "token:uploader")
        assert service.expire_stale(now=later) == 0  # once
    finally:
        service.close()
    assert PLANTED.decode() not in caplog.text


def test_the_service_sweeps_when_it_starts(incoming: BaseBlobStore, tmp_path: Path) -> None:
    first = _service(incoming, tmp_path, expires_seconds=1, stale_after_seconds=1)
    try:
        upload_id = _upload(first, count=1)
    finally:
        first.close()
    time.sleep(2.1)  # the URL expired, and its grace
    second = _service(incoming, tmp_path, expires_seconds=1, stale_after_seconds=1)
    try:
        deadline = time.monotonic() + 10
        while (row := second.registry.get(upload_id)) is not None and row.state != EXPIRED:
            assert time.monotonic() < deadline, "the start-up sweep did not expire the upload"
            time.sleep(0.05)
        assert _keys(incoming, upload_id) == []
    finally:
        second.close()


def test_objects_a_notification_queued_stay_when_their_upload_expires(
    incoming: BaseBlobStore, tmp_path: Path
) -> None:
    """An upload partly handed on by bucket notifications (docs/uploads.md) stays open; when
    it expires, only its pending objects go: a worker still needs the queued ones."""
    service = _service(incoming, tmp_path, expires_seconds=60, stale_after_seconds=60)
    try:
        upload_id = _upload(service)
        service.registry.set_object(upload_id, "00001.dcm", QUEUED, size=len(PLANTED))
        assert service.expire_stale(now=time.time() + 121) == 1
        assert _keys(incoming, upload_id) == [object_key(upload_id, "00001.dcm")]
        row = service.registry.get(upload_id)
        assert row is not None
        assert [item.state for item in row.objects] == [QUEUED, EXPIRED]
    finally:
        service.close()
