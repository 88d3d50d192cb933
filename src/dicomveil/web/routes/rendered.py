"""WADO-RS rendered resources: an instance or frame as JPEG or PNG, and thumbnails.

``window=center,width[,linear]``, ``viewport=width,height`` and ``quality`` are honoured;
without a window, the instance's own Window Center/Width applies (else the frame's range).
``Accept`` picks the format: ``image/jpeg`` (default) or ``image/png``. Thumbnails are the
rendered representative frame (the middle instance of a series, the first series' middle
instance of a study) fitted into 128×128 unless a viewport is given.

References
----------
PS3.18 §8.3.5 (rendered query parameters), §10.4.1.1.3-4 (rendered and thumbnail resources).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from dicomveil.index import StoredInstance
from dicomveil.tokens import Token
from dicomveil.web.archived import archived_file
from dicomveil.web.deps import DICOMWEB_PREFIX, ServicesDep, reader_scope, require
from dicomveil.web.errors import BadRequest
from dicomveil.web.negotiation import negotiate
from dicomveil.web.pixels import RenderOptions, parse_render_options, render
from dicomveil.web.routes.wado import stored_instances
from dicomveil.web.services import Services

__all__ = ["router"]

router = APIRouter(prefix=DICOMWEB_PREFIX, tags=["WADO-RS rendered"])

Reader = Annotated[Token, Depends(require("read"))]
Window = Annotated[str | None, Query(description="center,width[,linear]")]
Viewport = Annotated[str | None, Query(description="width,height")]
Quality = Annotated[int | None, Query(description="JPEG quality 1..100")]

_IMAGES: Final[list[tuple[str, str | None]]] = [("image/jpeg", None), ("image/png", None)]
_THUMBNAIL: Final = (128, 128)
_INSTANCE: Final = "/studies/{study}/series/{series}/instances/{instance}"
_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {"content": {"image/jpeg": {}, "image/png": {}}},
    400: {"description": "Malformed window, viewport or quality"},
    404: {"description": "Not in the archive, or no such frame"},
    406: {"description": "Only image/jpeg and image/png are produced"},
}


def _options(
    request: Request,
    window: str | None,
    viewport: str | None,
    quality: int | None,
    thumbnail: bool = False,
) -> RenderOptions:
    kind, _ = negotiate(request, _IMAGES)
    options = parse_render_options(kind, window, viewport, quality)
    if thumbnail and options.viewport is None:
        options = RenderOptions(options.media_type, options.window, _THUMBNAIL, options.quality)
    return options


def rendering_options(
    request: Request, window: Window = None, viewport: Viewport = None, quality: Quality = None
) -> RenderOptions:
    """The rendered resources' options, from ``Accept`` and the query (a FastAPI dependency)."""
    return _options(request, window, viewport, quality)


def thumbnail_options(request: Request, viewport: Viewport = None) -> RenderOptions:
    """The thumbnails' options: 128×128 unless a viewport is given (a FastAPI dependency)."""
    return _options(request, None, viewport, None, thumbnail=True)


Rendering = Annotated[RenderOptions, Depends(rendering_options)]
Thumbnail = Annotated[RenderOptions, Depends(thumbnail_options)]


def _rendered(
    services: Services, found: StoredInstance, frame: int, options: RenderOptions
) -> bytes:
    with archived_file(services, found) as path:
        return render(path, frame, options, services.settings.max_render_pixels)


async def _answer(
    services: Services, found: StoredInstance, frame: int, options: RenderOptions
) -> Response:
    data = await run_in_threadpool(_rendered, services, found, frame, options)
    return Response(data, media_type=options.media_type)


async def _instance_image(
    services: Services,
    reader: Token,
    options: RenderOptions,
    uids: tuple[str, str, str],
    frame: int = 1,
) -> Response:
    """One frame of the instance named by ``(study, series, instance)`` as an image."""
    scope = reader_scope(reader)
    (found,) = await run_in_threadpool(stored_instances, services, *uids, organisation=scope)
    return await _answer(services, found, frame, options)


async def _middle_image(
    services: Services,
    reader: Token,
    options: RenderOptions,
    study: str,
    series: str | None = None,
) -> Response:
    """The middle instance of a series (of the first series of a study) as an image."""
    scope = reader_scope(reader)
    found = await run_in_threadpool(stored_instances, services, study, series, organisation=scope)
    first_series = [i for i in found if i.series_instance_uid == found[0].series_instance_uid]
    return await _answer(services, first_series[len(first_series) // 2], 1, options)


def _frame(text: str) -> int:
    # ASCII digits only: str.isdigit() accepts "²" and "٣", which int() refuses (a 500)
    if not (0 < len(text) <= 9 and text.isascii() and text.isdigit()) or int(text) < 1:
        raise BadRequest("a rendered frame is one frame number, from 1")
    return int(text)


@router.get(_INSTANCE + "/rendered", summary="Rendered instance", responses=_RESPONSES)
async def rendered_instance(
    services: ServicesDep,
    reader: Reader,
    options: Rendering,
    study: str,
    series: str,
    instance: str,
) -> Response:
    """The instance's first frame as an image."""
    return await _instance_image(services, reader, options, (study, series, instance))


@router.get(_INSTANCE + "/frames/{frame}/rendered", summary="Rendered frame", responses=_RESPONSES)
async def rendered_frame(
    services: ServicesDep,
    reader: Reader,
    options: Rendering,
    study: str,
    series: str,
    instance: str,
    frame: str,
) -> Response:
    """One frame (1-based) as an image."""
    return await _instance_image(
        services, reader, options, (study, series, instance), _frame(frame)
    )


@router.get(_INSTANCE + "/thumbnail", summary="Instance thumbnail", responses=_RESPONSES)
async def instance_thumbnail(
    services: ServicesDep,
    reader: Reader,
    options: Thumbnail,
    study: str,
    series: str,
    instance: str,
) -> Response:
    """A small image of the instance's first frame."""
    return await _instance_image(services, reader, options, (study, series, instance))


@router.get(
    "/studies/{study}/series/{series}/thumbnail", summary="Series thumbnail", responses=_RESPONSES
)
async def series_thumbnail(
    services: ServicesDep, reader: Reader, options: Thumbnail, study: str, series: str
) -> Response:
    """A small image of the series' middle instance."""
    return await _middle_image(services, reader, options, study, series)


@router.get("/studies/{study}/thumbnail", summary="Study thumbnail", responses=_RESPONSES)
async def study_thumbnail(
    services: ServicesDep, reader: Reader, options: Thumbnail, study: str
) -> Response:
    """A small image of the study's first series' middle instance."""
    return await _middle_image(services, reader, options, study)
