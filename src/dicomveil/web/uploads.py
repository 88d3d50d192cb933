"""Receiving uploaded instances: a raw ``application/dicom`` body, or multipart.

Uploads are written to the request's private workspace as they stream in (never into
memory as a whole, never into the system's temporary folder: they hold PHI), and the
workspace is removed when the answer has been sent.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import Request

from dicomveil.web.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from dicomveil.web.multipart import Part, media_type, spool_related
from dicomveil.web.services import Services

__all__ = ["Workspace", "receive_instances"]

DICOM_TYPES = frozenset({"application/dicom", "application/octet-stream"})


class Workspace:
    """A request's private folder, removed by :meth:`remove` (or as a background task)."""

    def __init__(self, services: Services) -> None:
        self.path = services.workspace()
        (self.path / "in").mkdir()

    def remove(self) -> None:
        """Delete the folder and everything in it."""
        shutil.rmtree(self.path, ignore_errors=True)


async def _spool_raw(body: AsyncIterator[bytes], target: Path, limit: int) -> Path:
    size = 0
    with target.open("wb") as handle:
        async for chunk in body:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the instance exceeds {limit} bytes")
            handle.write(chunk)
    if size == 0:
        raise BadRequest("the request body is empty")
    return target


def _form_file(parts: list[Part]) -> Part:
    for part in parts:
        disposition = media_type(part.headers.get("content-disposition"))[1]
        if disposition.get("name") == "file":
            return part
    raise BadRequest("the multipart form has no 'file' field")


async def receive_instances(
    request: Request, workspace: Workspace, services: Services, *, single: bool
) -> list[Part]:
    """Spool the uploaded instance(s) of ``request`` into ``workspace``.

    Accepted bodies: ``application/dicom`` (one instance), ``multipart/form-data`` with a
    ``file`` field (one instance), and, unless ``single``, ``multipart/related`` with
    ``application/dicom`` parts (parts of other types are returned too: the caller reports
    them as failures).

    Raises
    ------
    UnsupportedMediaType, BadRequest, PayloadTooLarge
        As the body's media type, form and size demand.
    """
    kind, _ = media_type(request.headers.get("content-type"))
    folder = workspace.path / "in"
    limit = services.settings.max_instance_bytes
    if kind in DICOM_TYPES:
        path = await _spool_raw(request.stream(), folder / "upload", limit)
        return [Part(path, "application/dicom", path.stat().st_size)]
    if kind == "multipart/form-data":
        parts = await spool_related(
            request.headers.get("content-type"),
            request.stream(),
            folder,
            max_part=limit,
            kind="multipart/form-data",
        )
        return [_form_file(parts)]
    if kind == "multipart/related" and not single:
        parts = await spool_related(
            request.headers.get("content-type"), request.stream(), folder, max_part=limit
        )
        return parts
    raise UnsupportedMediaType("send application/dicom or multipart/form-data with a 'file'")
