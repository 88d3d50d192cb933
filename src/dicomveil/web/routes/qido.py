"""QIDO-RS: search the de-identified archive for studies, series and instances.

Matching on any indexed attribute (keyword or tag as the parameter name) with single value,
wild card (``*``, ``?``), date/time range and UID list matching; ``includefield`` (keywords,
tags or ``all``), ``limit`` and ``offset``; ``fuzzymatching`` (person names by prefix of any
component, any case). Attributes the index cannot match on are ignored with a ``Warning``
header, as PS3.18 requires; names that are no attribute at all are a 400.

References
----------
PS3.18 §10.6 (Search Transaction), §8.3.4 (query parameters), §8.3.4.4 (limit, offset).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydicom.datadict import keyword_for_tag

from dicomveil.index import Condition, Level, QueryError, matchable_at, parse_condition
from dicomveil.index import Query as IndexQuery
from dicomveil.index.attributes import MatchKind
from dicomveil.tokens import Token
from dicomveil.web.deps import DICOMWEB_PREFIX, ServicesDep, dicomweb_root, reader_scope, require
from dicomveil.web.dicomjson import parse_includefield, resolve_tag, row_json
from dicomveil.web.headers import complete_rows
from dicomveil.web.negotiation import negotiate
from dicomveil.web.warning_header import warning_header

__all__ = ["router"]

router = APIRouter(prefix=DICOMWEB_PREFIX, tags=["QIDO-RS"])

DICOM_JSON: Final = "application/dicom+json"
_RESERVED: Final = frozenset({"includefield", "limit", "offset", "fuzzymatching", "accept"})
_OFFERS: Final[list[tuple[str, str | None]]] = [(DICOM_JSON, None), ("application/json", None)]

_MAX_PAGING: Final = 2**31 - 1
Limit = Annotated[int | None, Query(ge=0, le=_MAX_PAGING, description="At most this many results.")]
Offset = Annotated[int, Query(ge=0, le=_MAX_PAGING, description="Skip this many results first.")]
IncludeField = Annotated[
    list[str],
    Query(description="Also return these attributes (keywords or tags), or 'all'."),
]
Fuzzy = Annotated[bool, Query(description="Fuzzy person-name matching.")]
Reader = Annotated[Token, Depends(require("read"))]


@dataclass(frozen=True, slots=True)
class SearchOptions:
    """The query parameters every search takes besides the matching ones."""

    limit: int | None
    offset: int
    includefield: list[str]
    fuzzymatching: bool


def search_options(
    limit: Limit = None,
    offset: Offset = 0,
    includefield: IncludeField = [],  # noqa: B006 - FastAPI copies defaults
    fuzzymatching: Fuzzy = False,
) -> SearchOptions:
    """Collect :class:`SearchOptions` from the query string (a FastAPI dependency)."""
    return SearchOptions(limit, offset, includefield, fuzzymatching)


Options = Annotated[SearchOptions, Depends(search_options)]


def _conditions(
    request: Request, level: Level, fuzzy: bool, folded: bool
) -> tuple[dict[str, Condition], list[str]]:
    """Parse the matching parameters: (conditions by keyword, keywords not supported)."""
    allowed = matchable_at(level)
    raw: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        if name in _RESERVED:
            continue
        keyword = _canonical(name)
        raw.setdefault(keyword, []).append(value)
    conditions: dict[str, Condition] = {}
    unsupported: list[str] = []
    for keyword, values in raw.items():
        attribute = allowed.get(keyword)
        if attribute is None:
            unsupported.append(keyword)
            continue
        joined = ",".join(values) if attribute.kind is MatchKind.UID else values[-1]
        condition = parse_condition(attribute, joined, case_insensitive_names=folded, fuzzy=fuzzy)
        if condition is not None:
            conditions[keyword] = condition
    return conditions, unsupported


def _canonical(name: str) -> str:
    """The attribute (or dotted sequence path) ``name`` names, spelled from the dictionary:
    keywords, else tags, never the client's own bytes.

    Raises
    ------
    QueryError
        A part is neither a DICOM keyword nor a tag.
    """
    parts = []
    for part in name.split("."):
        tag = resolve_tag(part)
        if tag is None:
            raise QueryError("a query parameter is neither a DICOM keyword nor a tag")
        parts.append(keyword_for_tag(int(tag, 16)) or tag)
    return ".".join(parts)


async def _search(
    request: Request,
    services: ServicesDep,
    reader: Token,
    level: Level,
    options: SearchOptions,
    *,
    study: str | None = None,
    series: str | None = None,
    flat: bool = False,
) -> JSONResponse:
    negotiate(request, _OFFERS)
    settings = services.settings
    include = parse_includefield(options.includefield)
    conditions, unsupported = _conditions(
        request, level, options.fuzzymatching, settings.case_insensitive_names
    )
    limit = options.limit
    chosen = settings.qido_default_limit if limit is None else limit
    warnings = []
    if chosen > settings.qido_max_limit:
        chosen = settings.qido_max_limit
        warnings.append(f"the limit was reduced to {chosen}, the server's maximum")
    query = IndexQuery(
        level,
        conditions=conditions,
        study_uid=study,
        series_uid=series,
        limit=chosen,
        offset=options.offset,
        flat=flat,
        with_metadata=bool(include),
        organisation=reader_scope(reader),
    )
    result = await run_in_threadpool(services.index.search, query)
    rows = result.rows
    if include:
        rows = await run_in_threadpool(complete_rows, services, rows)
    root = dicomweb_root(request)
    body = [row_json(row, include, root) for row in rows]
    if unsupported:
        names = ", ".join(sorted(unsupported))
        warnings.append(f"The following attributes are not supported for matching: {names}")
    if result.more and limit is None:
        warnings.append(
            "The number of results exceeded the maximum supported by the server. "
            "Additional results can be requested."
        )
    headers = warning_header(warnings)
    return JSONResponse(body, media_type=DICOM_JSON, headers=headers)


_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {"content": {DICOM_JSON: {}}, "description": "The matches (possibly none)"},
    400: {"description": "Malformed query"},
    406: {"description": "Only application/dicom+json is produced"},
}


@router.get("/studies", summary="QIDO-RS: search for studies", responses=_RESPONSES)
async def search_studies(
    request: Request,
    services: ServicesDep,
    reader: Reader,
    options: Options,
) -> JSONResponse:
    """Search all studies."""
    return await _search(request, services, reader, Level.STUDY, options)


@router.get("/series", summary="QIDO-RS: search for series", responses=_RESPONSES)
async def search_series(
    request: Request,
    services: ServicesDep,
    reader: Reader,
    options: Options,
) -> JSONResponse:
    """Search all series (results carry their study's attributes too)."""
    return await _search(request, services, reader, Level.SERIES, options, flat=True)


@router.get("/instances", summary="QIDO-RS: search for instances", responses=_RESPONSES)
async def search_instances(
    request: Request,
    services: ServicesDep,
    reader: Reader,
    options: Options,
) -> JSONResponse:
    """Search all instances (results carry their study's and series' attributes too)."""
    return await _search(request, services, reader, Level.INSTANCE, options, flat=True)


@router.get(
    "/studies/{study}/series", summary="QIDO-RS: search a study's series", responses=_RESPONSES
)
async def search_study_series(
    request: Request,
    services: ServicesDep,
    reader: Reader,
    study: str,
    options: Options,
) -> JSONResponse:
    """Search the series of one study."""
    return await _search(request, services, reader, Level.SERIES, options, study=study)


@router.get(
    "/studies/{study}/instances",
    summary="QIDO-RS: search a study's instances",
    responses=_RESPONSES,
)
async def search_study_instances(
    request: Request,
    services: ServicesDep,
    reader: Reader,
    study: str,
    options: Options,
) -> JSONResponse:
    """Search the instances of one study (results carry their series' attributes too)."""
    return await _search(request, services, reader, Level.INSTANCE, options, study=study, flat=True)


@router.get(
    "/studies/{study}/series/{series}/instances",
    summary="QIDO-RS: search a series' instances",
    responses=_RESPONSES,
)
async def search_series_instances(
    request: Request,
    services: ServicesDep,
    reader: Reader,
    study: str,
    series: str,
    options: Options,
) -> JSONResponse:
    """Search the instances of one series."""
    return await _search(
        request, services, reader, Level.INSTANCE, options, study=study, series=series
    )
