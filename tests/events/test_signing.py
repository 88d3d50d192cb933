"""The webhook signature: HMAC-SHA256 over ``t.body``, with a timestamp against replay."""

from __future__ import annotations

import hashlib
import hmac

from dicomveil.events import sign, verify

SECRET = b"0123456789abcdef-secret"
BODY = b'{"specversion":"1.0","type":"org.dicomveil.study.complete"}'


def test_signature_verifies_and_is_documented_hmac() -> None:
    header = sign([SECRET], BODY, timestamp=1_700_000_000)
    assert verify(SECRET, BODY, header, now=1_700_000_010)
    # what docs/events.md tells a receiver to compute, by hand
    expected = hmac.new(SECRET, b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_tampered_body_wrong_secret_or_old_timestamp_fail() -> None:
    header = sign([SECRET], BODY, timestamp=1_700_000_000)
    assert not verify(SECRET, BODY + b" ", header, now=1_700_000_000)
    assert not verify(b"another-secret-of-16+", BODY, header, now=1_700_000_000)
    assert not verify(SECRET, BODY, header, now=1_700_000_000 + 301)  # replayed later
    forged = header.replace("t=1700000000", "t=1700000300")  # a new time, old MAC
    assert not verify(SECRET, BODY, forged, now=1_700_000_300)
    assert not verify(SECRET, BODY, "v1=abc", now=1_700_000_000)
    assert not verify(SECRET, BODY, "", now=1_700_000_000)


def test_rotation_signs_with_every_secret() -> None:
    new, old = b"new-secret-0123456789", SECRET
    header = sign([new, old], BODY, timestamp=5)
    assert verify(new, BODY, header, now=5) and verify(old, BODY, header, now=5)
