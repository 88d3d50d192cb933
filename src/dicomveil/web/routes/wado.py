"""WADO-RS: retrieve de-identified studies, series and instances, metadata, bulk data, frames.

References
----------
PS3.18 §10.4 (Retrieve Transaction): instance resources (multipart/related;
type="application/dicom"), metadata resources (application/dicom+json with BulkDataURI),
bulk data and frame resources (multipart/related; type="application/octet-stream" or the
compressed frames' own media type).

Instances and frames are streamed from the archived files (see
:mod:`dicomveil.web.archived`): the memory a retrieve costs does not grow with the
instance's size.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from pydicom import dcmread

from dicomveil.index import StoredInstance
from dicomveil.tokens import Token
from dicomveil.web.archived import archived_file, file_chunks
from dicomveil.web.deps import DICOMWEB_PREFIX, ServicesDep, dicomweb_root, reader_scope, require
from dicomveil.web.dicomjson import rewrite_bulk
from dicomveil.web.errors import BadRequest, NotFound
from dicomveil.web.headers import complete_instances
from dicomveil.web.multipart import multipart_body, new_boundary, related_content_type
from dicomveil.web.negotiation import negotiate
from dicomveil.web.pixels import (
    OCTET,
    file_frames,
    frame_media_type,
    parse_frame_numbers,
    raw_frame_syntax,
)
from dicomveil.web.services import Services

__all__ = ["router", "stored_instances"]

router = APIRouter(prefix=DICOMWEB_PREFIX, tags=["WADO-RS"])

DICOM: Final = "application/dicom"
DICOM_JSON: Final = "application/dicom+json"
Reader = Annotated[Token, Depends(require("read"))]
_TAG: Final = re.compile(r"[0-9A-Fa-f]{8}")
_INSTANCE: Final = "/studies/{study}/series/{series}/instances/{instance}"


def stored_instances(
    services: Services,
    study: str,
    series: str | None = None,
    sop: str | None = None,
    *,
    organisation: str | None = None,
) -> list[StoredInstance]:
    """The archived instances named by the URL; raise :class:`NotFound` when there are none
    (or when the study is not ``organisation``'s: see :func:`~dicomveil.web.deps.reader_scope`)."""
    found = services.index.instances(study, series, sop, organisation=organisation)
    if not found:
        what = "instance" if sop else "series" if series else "study"
        raise NotFound(f"no such {what} in the archive")
    return found


def _element_value(services: Services, instance: StoredInstance, tag: int) -> bytes | None:
    """The bytes of one top-level element (``None``: absent, or not bulk data); the rest
    of the instance's large values stay in the file."""
    with archived_file(services, instance) as path:
        ds = dcmread(path, defer_size=4096)
        element = ds.get(tag)
        return element.value if element is not None and isinstance(element.value, bytes) else None


def _instance_url(root: str, instance: StoredInstance) -> str:
    return (
        f"{root}/studies/{instance.study_instance_uid}/series/"
        f"{instance.series_instance_uid}/instances/{instance.sop_instance_uid}"
    )


async def _retrieve(
    request: Request, services: Services, found: list[StoredInstance], single: bool
) -> Response:
    offers: list[tuple[str, str | None]] = [("multipart/related", DICOM)]
    if single:
        offers.append((DICOM, None))
    kind, _ = negotiate(request, offers)
    if kind == DICOM:
        headers = {"Content-Length": str(found[0].size)} if found[0].size else None
        return StreamingResponse(file_chunks(services, found[0]), media_type=DICOM, headers=headers)

    def parts() -> Iterator[tuple[dict[str, str], Iterable[bytes]]]:
        for instance in found:
            yield {"Content-Type": DICOM}, file_chunks(services, instance)

    boundary = new_boundary()
    return StreamingResponse(
        multipart_body(parts(), boundary), media_type=related_content_type(DICOM, boundary)
    )


async def _metadata(request: Request, services: Services, found: list[StoredInstance]) -> Response:
    negotiate(request, [(DICOM_JSON, None), ("application/json", None)])
    found = await run_in_threadpool(complete_instances, services, found)
    root = dicomweb_root(request)
    body = ",".join(rewrite_bulk(i.metadata, _instance_url(root, i)) for i in found)
    return Response(f"[{body}]", media_type=DICOM_JSON)


_RETRIEVE: Final[dict[int | str, dict[str, Any]]] = {
    200: {"content": {'multipart/related; type="application/dicom"': {}}},
    404: {"description": "Not in the archive"},
    406: {"description": "Only DICOM instances are produced"},
}
_METADATA: Final[dict[int | str, dict[str, Any]]] = {
    200: {"content": {DICOM_JSON: {}}},
    404: {"description": "Not in the archive"},
}


@router.get("/studies/{study}", summary="WADO-RS: retrieve a study", responses=_RETRIEVE)
async def retrieve_study(
    request: Request, services: ServicesDep, reader: Reader, study: str
) -> Response:
    """Every instance of the study, as ``multipart/related; type="application/dicom"``."""
    found = await run_in_threadpool(
        stored_instances, services, study, organisation=reader_scope(reader)
    )
    return await _retrieve(request, services, found, single=False)


@router.get(
    "/studies/{study}/series/{series}", summary="WADO-RS: retrieve a series", responses=_RETRIEVE
)
async def retrieve_series(
    request: Request, services: ServicesDep, reader: Reader, study: str, series: str
) -> Response:
    """Every instance of the series."""
    found = await run_in_threadpool(
        stored_instances, services, study, series, organisation=reader_scope(reader)
    )
    return await _retrieve(request, services, found, single=False)


@router.get(_INSTANCE, summary="WADO-RS: retrieve an instance", responses=_RETRIEVE)
async def retrieve_instance(
    request: Request, services: ServicesDep, reader: Reader, study: str, series: str, instance: str
) -> Response:
    """One instance (multipart, or ``application/dicom`` alone when that is asked for)."""
    found = await run_in_threadpool(
        stored_instances, services, study, series, instance, organisation=reader_scope(reader)
    )
    return await _retrieve(request, services, found, single=True)


@router.get("/studies/{study}/metadata", summary="WADO-RS: a study's metadata", responses=_METADATA)
async def study_metadata(
    request: Request, services: ServicesDep, reader: Reader, study: str
) -> Response:
    """The headers of every instance of the study, bulk data by URI."""
    return await _metadata(
        request,
        services,
        await run_in_threadpool(
            stored_instances, services, study, organisation=reader_scope(reader)
        ),
    )


@router.get(
    "/studies/{study}/series/{series}/metadata",
    summary="WADO-RS: a series' metadata",
    responses=_METADATA,
)
async def series_metadata(
    request: Request, services: ServicesDep, reader: Reader, study: str, series: str
) -> Response:
    """The headers of every instance of the series."""
    found = await run_in_threadpool(
        stored_instances, services, study, series, organisation=reader_scope(reader)
    )
    return await _metadata(request, services, found)


@router.get(_INSTANCE + "/metadata", summary="WADO-RS: an instance's metadata", responses=_METADATA)
async def instance_metadata(
    request: Request, services: ServicesDep, reader: Reader, study: str, series: str, instance: str
) -> Response:
    """The header of one instance."""
    found = await run_in_threadpool(
        stored_instances, services, study, series, instance, organisation=reader_scope(reader)
    )
    return await _metadata(request, services, found)


def _octets(chunks: Iterable[bytes], part_type: str, syntax: str | None = None) -> Response:
    boundary = new_boundary()
    header = part_type if syntax is None else f"{part_type}; transfer-syntax={syntax}"
    params = {} if syntax is None else {"transfer_syntax": syntax}
    parts = (({"Content-Type": header}, chunk) for chunk in chunks)
    return StreamingResponse(
        multipart_body(parts, boundary),
        media_type=related_content_type(part_type, boundary, **params),
    )


@router.get(
    _INSTANCE + "/bulkdata/{tag}",
    summary="WADO-RS: a bulk data element of an instance",
    responses={200: {"content": {'multipart/related; type="application/octet-stream"': {}}}},
)
async def bulkdata(
    request: Request,
    services: ServicesDep,
    reader: Reader,
    study: str,
    series: str,
    instance: str,
    tag: str,
) -> Response:
    """The value of one top-level element, as referenced by a metadata BulkDataURI."""
    if not _TAG.fullmatch(tag):
        raise BadRequest("a bulk data tag is eight hexadecimal digits")
    negotiate(request, [("multipart/related", OCTET)])
    (found,) = await run_in_threadpool(
        stored_instances, services, study, series, instance, organisation=reader_scope(reader)
    )
    value = await run_in_threadpool(_element_value, services, found, int(tag, 16))
    if value is None:
        raise NotFound("the instance has no bulk data under this tag")
    return _octets([value], OCTET)


@router.get(
    _INSTANCE + "/frames/{frame_list}",
    summary="WADO-RS: frames of an instance",
    responses={
        200: {"content": {'multipart/related; type="application/octet-stream"': {}}},
        404: {"description": "No such instance or frame"},
        406: {"description": "The frames cannot be produced in an accepted media type"},
    },
)
async def retrieve_frames(
    request: Request,
    services: ServicesDep,
    reader: Reader,
    study: str,
    series: str,
    instance: str,
    frame_list: str,
) -> Response:
    """Frames (``1,2,3``, 1-based) as stored when the client accepts their media type
    (and transfer syntax), else decoded to raw bytes (``application/octet-stream``).

    Every part's Content-Type names its transfer syntax. Decoded frames are Explicit VR
    Little Endian with pixels interleaved (PlanarConfiguration 0), and YBR colour JPEG
    is converted to RGB as it is decoded (PS3.5 §8.2.1): the PhotometricInterpretation
    that applies to them is RGB, while the metadata keeps describing the stored instance.
    """
    (found,) = await run_in_threadpool(
        stored_instances, services, study, series, instance, organisation=reader_scope(reader)
    )
    numbers = parse_frame_numbers(frame_list, found.number_of_frames or 1)
    native = frame_media_type(found.transfer_syntax_uid)
    raw_syntax = raw_frame_syntax(found.transfer_syntax_uid)
    offers: list[tuple[str, str | None]] = [("multipart/related", native)]
    syntaxes = {native: found.transfer_syntax_uid if native != OCTET else raw_syntax}
    if native != OCTET:
        offers.append(("multipart/related", OCTET))
        syntaxes[OCTET] = raw_syntax
    _kind, part = negotiate(request, offers, syntaxes)
    decode = native != OCTET and part == OCTET
    chunks = await run_in_threadpool(_frames, services, found, numbers, decode)
    if decode or native == OCTET:
        return _octets(chunks, OCTET, raw_syntax)
    return _octets(chunks, native, found.transfer_syntax_uid)


def _frames(
    services: Services, found: StoredInstance, numbers: list[int], decode: bool
) -> Iterator[bytes]:
    """The frames, read one at a time as the answer is sent; the first is read here, so
    that a missing frame or pixel data is an error answer, not a broken stream."""
    stream = _frame_stream(services, found, numbers, decode)
    first = next(stream)
    return itertools.chain([first], stream)


def _frame_stream(
    services: Services, found: StoredInstance, numbers: list[int], decode: bool
) -> Iterator[bytes]:
    with archived_file(services, found) as path:
        yield from file_frames(path, numbers, decode=decode)
