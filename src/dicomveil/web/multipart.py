"""Multipart bodies: spooling a streamed ``multipart/related`` request, writing answers.

Requests are parsed as they stream in (python-multipart's push parser); each part goes to
its own file of a :class:`~dicomveil.web.spool.Spool` (in memory within the request's
budget, in its workspace beyond), so memory stays bounded whatever the body size. A body
that ends before its closing boundary is refused as truncated: nothing of it is used.

References
----------
PS3.18 §8.6.1.1 (STOW-RS request), §8.7.3.5 (multipart WADO-RS answers); RFC 2387.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from dicomveil.web.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from dicomveil.web.spool import Spool, SpoolFile

__all__ = [
    "Part",
    "media_type",
    "multipart_body",
    "new_boundary",
    "related_content_type",
    "spool_related",
]

MAX_PARTS: Final = 10_000


@dataclass(slots=True)
class Part:
    """One spooled part: where to read it, declared content type and size."""

    path: Path
    content_type: str = ""
    size: int = 0
    headers: dict[str, str] = field(default_factory=dict)


def media_type(header: str | None) -> tuple[str, dict[str, str]]:
    """Split a Content-Type header into its lower-case media type and parameters."""
    kind, params = parse_options_header(header or "")
    return kind.decode("latin-1").lower(), {
        k.decode("latin-1").lower(): v.decode("latin-1") for k, v in params.items()
    }


class _Spooler:
    """Callbacks of the push parser: headers into a dict, data into one file per part."""

    def __init__(self, spool: Spool, max_part: int) -> None:
        self.spool, self.max_part = spool, max_part
        self.parts: list[Part] = []
        self.ended = False
        self._file: SpoolFile | None = None
        self._field = b""
        self._value = b""

    def on_part_begin(self) -> None:
        if len(self.parts) >= MAX_PARTS:
            raise BadRequest(f"more than {MAX_PARTS} parts in one request")
        self._file = self.spool.create(f"part-{len(self.parts) + 1:05d}")
        self.parts.append(Part(self._file.path))

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        name = self._field.decode("latin-1").strip().lower()
        self.parts[-1].headers[name] = self._value.decode("latin-1").strip()
        self._field = self._value = b""

    def on_headers_finished(self) -> None:
        part = self.parts[-1]
        part.content_type = media_type(part.headers.get("content-type"))[0]

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        part.size += end - start
        if part.size > self.max_part:
            raise PayloadTooLarge(f"a part exceeds {self.max_part} bytes")
        assert self._file is not None
        self._file.write(memoryview(data)[start:end])

    def on_part_end(self) -> None:
        self.close()

    def on_end(self) -> None:
        self.ended = True

    def close(self) -> None:
        if self._file is not None:
            self._file.finish()
            self.parts[-1].path = self._file.path  # moved to disk on the way, perhaps
            self._file = None


async def spool_related(
    content_type: str | None,
    body: AsyncIterator[bytes],
    spool: Spool,
    *,
    max_part: int,
    accepted: frozenset[str] = frozenset({"application/dicom"}),
    kind: str = "multipart/related",
) -> list[Part]:
    """Spool a ``multipart/related`` (or other ``kind`` of multipart) body, one file per part.

    Parameters
    ----------
    content_type:
        The request's Content-Type header.
    body:
        The request body as it streams in.
    spool:
        Where the parts go (the caller releases it).
    max_part:
        Largest part, in bytes.
    accepted:
        Root types (the ``type`` parameter) this route takes.
    kind:
        The multipart media type expected (``multipart/form-data`` for forms).

    Raises
    ------
    UnsupportedMediaType
        Not ``kind``, or a ``type`` parameter this route does not take.
    BadRequest
        No boundary, malformed or truncated body, no parts.
    PayloadTooLarge
        A part is larger than ``max_part``.
    """
    found, params = media_type(content_type)
    if found != kind:
        raise UnsupportedMediaType(f"the body must be {kind}")
    root = params.get("type", "").lower()
    if root and root not in accepted:
        raise UnsupportedMediaType(f"multipart/related of type {root} is not supported")
    boundary = params.get("boundary", "")
    if not boundary or len(boundary) > 200:
        raise BadRequest("the multipart/related Content-Type has no valid boundary")
    spooler = _Spooler(spool, max_part)
    callbacks = {name: getattr(spooler, name) for name in dir(spooler) if name.startswith("on_")}
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        async for chunk in body:
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except MultipartParseError:
        raise BadRequest("the multipart body is malformed") from None
    finally:
        spooler.close()
    if not spooler.ended:
        raise BadRequest("the multipart body is truncated (no closing boundary)")
    if not spooler.parts:
        raise BadRequest("the multipart body has no parts")
    return spooler.parts


def related_content_type(part_type: str, boundary: str, **params: str) -> str:
    """Return ``multipart/related; type="...";`` with ``params`` and the boundary."""
    extra = "".join(f"; {name.replace('_', '-')}={value}" for name, value in params.items())
    return f'multipart/related; type="{part_type}"{extra}; boundary={boundary}'


def new_boundary() -> str:
    """A boundary that will not occur in the parts (128 random bits)."""
    return f"dicomveil-{secrets.token_hex(16)}"


def multipart_body(
    parts: Iterable[tuple[dict[str, str], bytes | Iterable[bytes]]], boundary: str
) -> Iterator[bytes]:
    """Yield the encoded multipart body of ``(headers, content)`` pairs, lazily (a part's
    content is bytes, or an iterable of byte chunks read as the body is sent)."""
    for headers, content in parts:
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        yield f"--{boundary}\r\n{head}\r\n".encode("latin-1")
        if isinstance(content, bytes | bytearray | memoryview):
            yield bytes(content)
        else:
            yield from content
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode("latin-1")
