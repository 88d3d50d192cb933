"""Forward by STOW-RS: POST the de-identified instances to a DICOMweb server.

Instances go in ``multipart/related; type="application/dicom"`` requests to
``{url}/studies`` (PS3.18 §10.5), up to 32 instances or 32 MiB per request, with an optional
bearer token read from the environment variable the rule names. A ``200`` response stores the
whole request; a ``202`` stores those listed in its Referenced SOP Sequence (0008,1199) and
fails the others; anything else fails the request. Failures are retried by the queue; only the
instances not yet acknowledged are sent again. One attempt is one :class:`StowStream`: one
HTTP client (its connections kept alive) for every request, whether the instances come as
they are archived (on-arrival rules: each request takes what arrived since the last one) or
all at once. Response bodies are never logged or kept
(they could echo attribute values): a failure is reported by its HTTP status.

References
----------
PS3.18 §10.5 (Store Transaction), §10.5.3 (response).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

from dicomveil._optional import require
from dicomveil.forward.queue import Job, QueuedInstance
from dicomveil.forward.sender import Acknowledge, ForwardFailed
from dicomveil.forward.settings import Target

__all__ = ["StowSender", "StowStream", "multipart_body"]

_MAX_PARTS: Final = 32
_MAX_BYTES: Final = 32 << 20
_REFERENCED_SOP_SEQUENCE: Final = "00081199"
_REFERENCED_SOP_INSTANCE_UID: Final = "00081155"


def multipart_body(parts: Sequence[bytes], boundary: str) -> bytes:
    """Return a ``multipart/related`` body of DICOM parts (PS3.18 §8.6.1.2)."""
    chunks: list[bytes] = []
    for part in parts:
        chunks += [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(), part]
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks)


class StowSender:
    """Send to the DICOMweb server of ``target`` (``url`` is its root, before ``/studies``).

    Parameters
    ----------
    target
        The URL and the name of the token's environment variable.
    timeout
        Seconds per HTTP request.
    """

    def __init__(self, target: Target, timeout: float) -> None:
        self._target, self._timeout = target, timeout

    def scope(self, job: Job) -> str:
        """Sent records are kept per DICOMweb server."""
        return f"stow:{self._target.label}"

    def open(
        self,
        job: Job,
        read: Callable[[str], bytes],
        acknowledge: Acknowledge,
        changed: Callable[[], None],
    ) -> StowStream:
        """Open one attempt (the client connects at the first request)."""
        return StowStream(self._target, self._timeout, read, acknowledge)


class StowStream:
    """One attempt's requests, sent in the submitting thread (a :class:`~.sender.Stream`)."""

    def __init__(
        self,
        target: Target,
        timeout: float,
        read: Callable[[str], bytes],
        acknowledge: Acknowledge,
    ) -> None:
        self._target, self._timeout = target, timeout
        self._read, self._acknowledge = read, acknowledge
        self._client: Any = None
        self._failed = 0

    def submit(self, items: Sequence[QueuedInstance]) -> None:
        """POST ``items`` (requests of up to 32 instances / 32 MiB); ForwardFailed unless
        each request was answered 200 or 202."""
        if not items:
            return
        httpx = require("httpx", "STOW-RS forwarding", "routing")
        if self._client is None:
            headers = {"Accept": "application/dicom+json"}
            token = self._target.token()
            if token:
                headers["Authorization"] = f"Bearer {token}"
            self._client = httpx.Client(timeout=self._timeout, headers=headers)
        url = self._target.url.rstrip("/") + "/studies"
        for group in _requests(items, self._read):
            boundary = os.urandom(16).hex()
            body = multipart_body([data for _, data in group], boundary)
            content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
            try:
                answer = self._client.post(
                    url, content=body, headers={"Content-Type": content_type}
                )
            except httpx.HTTPError as exc:
                raise ForwardFailed(f"STOW-RS request failed ({type(exc).__name__})") from None
            uids = [item.sop_instance_uid for item, _ in group]
            if answer.status_code == 200:
                self._acknowledge(uids)
            elif answer.status_code == 202:
                stored = _referenced(answer) & set(uids)
                self._acknowledge([uid for uid in uids if uid in stored])
                self._failed += len(uids) - len(stored)
            else:
                raise ForwardFailed(f"STOW-RS answered HTTP {answer.status_code}")

    def busy(self) -> bool:
        """Never: requests are answered before :meth:`submit` returns."""
        return False

    def fatal(self) -> ForwardFailed | None:
        """Never: a failed request raises from :meth:`submit`."""
        return None

    def rejected(self) -> ForwardFailed | None:
        """Instances a 202 answer left out."""
        if not self._failed:
            return None
        return ForwardFailed(f"STOW-RS refused {self._failed} instance(s) (HTTP 202)")

    def close(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            self._client.close()
            self._client = None


def _requests(
    items: Sequence[QueuedInstance], read: Callable[[str], bytes]
) -> Iterator[list[tuple[QueuedInstance, bytes]]]:
    """Group instances into requests of bounded size, reading them as needed."""
    group: list[tuple[QueuedInstance, bytes]] = []
    size = 0
    for item in items:
        data = read(item.storage_key)
        if group and (len(group) >= _MAX_PARTS or size + len(data) > _MAX_BYTES):
            yield group
            group, size = [], 0
        group.append((item, data))
        size += len(data)
    if group:
        yield group


def _referenced(answer: Any) -> set[str]:
    """The SOP Instance UIDs a STOW-RS response lists as stored (empty if unreadable)."""
    try:
        body = answer.json()
        items = body[_REFERENCED_SOP_SEQUENCE]["Value"]
        return {str(item[_REFERENCED_SOP_INSTANCE_UID]["Value"][0]) for item in items}
    except (ValueError, KeyError, IndexError, TypeError):
        return set()
