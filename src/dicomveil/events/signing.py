"""Signing webhook bodies: HMAC-SHA256 over the timestamp and the exact body bytes.

The header (``X-Dicomveil-Signature``) is ``t=<unix seconds>,v1=<hex>``, where ``<hex>`` is
``HMAC-SHA256(secret, f"{t}." + body)``. A receiver recomputes it over the raw body it got
(before any JSON parsing), compares in constant time, and refuses a timestamp older than its
tolerance (5 minutes by default) so a captured request cannot be replayed later. Several
``v1=`` entries may appear while a secret is rotated: one match is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Final

__all__ = ["SIGNATURE_HEADER", "sign", "verify"]

SIGNATURE_HEADER: Final = "X-Dicomveil-Signature"
TOLERANCE_SECONDS: Final = 300


def _mac(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secrets: list[bytes], body: bytes, timestamp: int | None = None) -> str:
    """The signature header value for ``body`` (one ``v1`` per secret, newest first)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return ",".join([f"t={stamp}", *(f"v1={_mac(s, stamp, body)}" for s in secrets)])


def verify(
    secret: bytes,
    body: bytes,
    header: str,
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance`` seconds."""
    stamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isascii() and value.isdigit():
            stamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if stamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance:
        return False
    expected = _mac(secret, stamp, body)
    return any(hmac.compare_digest(expected, c) for c in candidates)
