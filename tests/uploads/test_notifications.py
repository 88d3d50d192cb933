"""Reading S3 event notifications (pure part): the event body and the key → upload mapping.

Object keys are chosen by whoever holds a signed URL (and by anyone who can write to the
bucket), so only the exact shape this service generates may map to an upload.
"""

from __future__ import annotations

import json

import pytest

from dicomveil.uploads.notifications import ObjectEvent, _region, parse_event, upload_object

UPLOAD = "0123456789abcdef0123456789abcdef"


def _record(key: str, *, bucket: str = "inc", name: str = "ObjectCreated:Put") -> dict[str, object]:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": name,
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 5, "eTag": "x"}},
    }


def test_records_are_read_and_keys_decoded() -> None:
    body = json.dumps(
        {
            "Records": [
                _record("in%2Fincoming%2F" + UPLOAD + "%2F00001.dcm"),
                _record("in/a+b.dcm"),
                _record("in/x.dcm", name="ObjectRemoved:Delete"),  # not a creation
                {"eventSource": "aws:sqs"},
            ]
        }
    )
    assert parse_event(body) == [
        ObjectEvent("inc", f"in/incoming/{UPLOAD}/00001.dcm"),
        ObjectEvent("inc", "in/a b.dcm"),
    ]


def test_test_events_and_garbage() -> None:
    assert parse_event(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})) == []
    assert parse_event("not json") is None
    assert parse_event("[1, 2]") is None
    assert parse_event(json.dumps({"Records": "no"})) is None
    broken = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]}
    assert parse_event(json.dumps(broken)) == []


def test_only_generated_keys_of_the_incoming_prefix_map_to_an_upload() -> None:
    good = ObjectEvent("inc", f"in/incoming/{UPLOAD}/00042.dcm")
    assert upload_object(good, "inc", "in/") == (UPLOAD, "00042.dcm")
    assert upload_object(ObjectEvent("inc", f"incoming/{UPLOAD}/00001.dcm"), "inc", "") == (
        UPLOAD,
        "00001.dcm",
    )


@pytest.mark.parametrize(
    "key",
    [
        f"in/incoming/{UPLOAD}/00001.dcm/x",  # one segment more
        f"in/incoming/{UPLOAD}/../{UPLOAD}/00001.dcm",
        f"in/incoming/{UPLOAD.upper()}/00001.dcm",
        f"in/incoming/{UPLOAD}/1.dcm",
        f"in/incoming/{UPLOAD}/00001.dcm ",
        f"in/incoming/{UPLOAD}/Smith^John.dcm",
        f"in/other/{UPLOAD}/00001.dcm",
        f"out/incoming/{UPLOAD}/00001.dcm",  # another prefix of the bucket
        f"in//incoming/{UPLOAD}/00001.dcm",
        f"in/incoming/{UPLOAD}0/00001.dcm",
        "in/incoming/",
    ],
)
def test_other_keys_map_to_nothing(key: str) -> None:
    assert upload_object(ObjectEvent("inc", key), "inc", "in/") is None


def test_another_bucket_maps_to_nothing() -> None:
    event = ObjectEvent("other", f"in/incoming/{UPLOAD}/00001.dcm")
    assert upload_object(event, "inc", "in/") is None


def test_region_of_a_queue_url() -> None:
    assert _region("https://sqs.eu-west-1.amazonaws.com/123456789012/q") == "eu-west-1"
    assert _region("http://127.0.0.1:5000/123456789012/q") is None
