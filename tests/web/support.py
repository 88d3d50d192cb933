"""Helpers for the gateway tests: multipart bodies, parsing answers, tokens."""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterable
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

TEST_KEY = "gateway-test-pseudonym-key-0123456789"
DICOM_JSON = "application/dicom+json"


def related_body(
    parts: Iterable[bytes | tuple[str, bytes]], part_type: str = "application/dicom"
) -> tuple[str, bytes]:
    """Return (Content-Type, body) of a ``multipart/related`` request."""
    boundary = f"test-{secrets.token_hex(8)}"
    out = io.BytesIO()
    for part in parts:
        kind, data = part if isinstance(part, tuple) else (part_type, part)
        out.write(f"--{boundary}\r\nContent-Type: {kind}\r\n\r\n".encode())
        out.write(data)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return f'multipart/related; type="{part_type}"; boundary={boundary}', out.getvalue()


def split_related(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """Split a multipart answer into (part Content-Type, content) pairs."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    assert message.is_multipart(), content_type
    return [
        (str(part.get("Content-Type", "")), part.get_payload(decode=True) or b"")
        for part in message.iter_parts()
    ]


def datasets(content_type: str, body: bytes) -> list[Dataset]:
    """The DICOM instances of a multipart WADO-RS answer."""
    return [pydicom.dcmread(io.BytesIO(data)) for _kind, data in split_related(content_type, body)]


def files_bytes(paths: Iterable[Path]) -> list[bytes]:
    """Read files."""
    return [Path(p).read_bytes() for p in paths]


def first(element: dict[str, object]) -> object:
    """The first value of a DICOM JSON element."""
    values = element.get("Value")
    assert isinstance(values, list) and values, element
    return values[0]
