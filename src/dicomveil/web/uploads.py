"""Receiving uploaded instances: a raw ``application/dicom`` body, or multipart.

Uploads are spooled as they stream in: multipart parts into anonymous memory within the
request's budget (see :mod:`dicomveil.web.spool`), everything else into the request's
private workspace (never into the system's temporary folder: they hold PHI). The memory is
released and the workspace removed when the answer has been sent.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import Request

from dicomveil.web.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from dicomveil.web.multipart import Part, media_type, spool_related
from dicomveil.web.services import Services
from dicomveil.web.spool import MEMORY_BUDGET, Spool

__all__ = ["Workspace", "receive_instances"]

DICOM_TYPES = frozenset({"application/dicom", "application/octet-stream"})


class Workspace:
    """A request's private folder and spool, removed by :meth:`remove` (or as a background
    task). The ``in`` folder (parts that do not stay in memory) is made when first needed."""

    def __init__(self, services: Services) -> None:
        self.path = services.workspace()
        budget = MEMORY_BUDGET if services.engine.shares_memory else 0
        self.spool = Spool(self.path / "in", budget)

    def inbox(self) -> Path:
        """The folder for uploads spooled to disk (made on first use)."""
        folder = self.path / "in"
        folder.mkdir(exist_ok=True)
        return folder

    def remove(self) -> None:
        """Release the spool, then delete the folder and everything in it."""
        self.spool.close()
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
    limit = services.settings.max_instance_bytes
    if kind in DICOM_TYPES:
        path = await _spool_raw(request.stream(), workspace.inbox() / "upload", limit)
        return [Part(path, "application/dicom", path.stat().st_size)]
    if kind == "multipart/form-data":
        parts = await spool_related(
            request.headers.get("content-type"),
            request.stream(),
            workspace.spool,
            max_part=limit,
            kind="multipart/form-data",
        )
        return [_form_file(parts)]
    if kind == "multipart/related" and not single:
        parts = await spool_related(
            request.headers.get("content-type"), request.stream(), workspace.spool, max_part=limit
        )
        return parts
    raise UnsupportedMediaType("send application/dicom or multipart/form-data with a 'file'")
