"""``POST /api/v1/reidentify``: the way back, for ``reidentify`` tokens only, always audited.

Both routes call :mod:`dicomveil.reid` (as the CLI does): a missing purpose is refused *and*
audited (403), the audit entry names the token, the purpose and the pseudonym, never the
result. Identifiers travel in the body, never in the URL.
"""

from __future__ import annotations

import io
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from dicomveil.errors import MalformedInputError, VaultError
from dicomveil.reid import reidentify, reidentify_dataset
from dicomveil.tokens import Token
from dicomveil.vault import StudyMatch
from dicomveil.web.deps import ServicesDep, require
from dicomveil.web.errors import BadRequest, NotFound
from dicomveil.web.routes.gateway import DICOM_BODY
from dicomveil.web.services import Services
from dicomveil.web.uploads import Workspace, receive_instances

__all__ = ["ReidentifyRequest", "ReidentifyResponse", "router"]

router = APIRouter(prefix="/api/v1", tags=["re-identification"])

_Pseudonym = Annotated[str | None, Field(default=None, min_length=1, max_length=128)]


class ReidentifyRequest(BaseModel):
    """Exactly one pseudonymous identifier, and why it is looked up."""

    model_config = ConfigDict(extra="forbid")

    purpose: str = Field("", max_length=1000, description="Why (recorded in the audit log).")
    patient: _Pseudonym = None
    study: _Pseudonym = None
    accession: _Pseudonym = None


class StudyOut(BaseModel):
    """One study: pseudonymous and original identifiers keyed by DICOM keyword."""

    pseudonymous: dict[str, str]
    original: dict[str, str]
    pseudonym_key_id: str
    run_id: str
    date_offset_days: int
    series: int
    instances: int


class ReidentifyResponse(BaseModel):
    """The studies behind the pseudonym (empty when nothing matches)."""

    found: bool
    studies: list[StudyOut]


def _study(match: StudyMatch) -> StudyOut:
    return StudyOut(
        pseudonymous=match.pseudonymous_dicom(),
        original=match.original.as_dicom(),
        pseudonym_key_id=match.pseudonym_key_id,
        run_id=match.run_id,
        date_offset_days=match.date_offset_days,
        series=match.series_count,
        instances=match.instance_count,
    )


@router.post(
    "/reidentify",
    summary="Original identifiers behind a pseudonym (role reidentify; audited)",
    response_model=ReidentifyResponse,
    responses={400: {"description": "Not exactly one identifier"}, 403: {"description": "Refused"}},
)
def reidentify_lookup(
    body: ReidentifyRequest,
    services: ServicesDep,
    token: Annotated[Token, Depends(require("reidentify"))],
) -> ReidentifyResponse:
    """Look a pseudonymous patient id, study id / Study Instance UID or accession up."""
    given = {k: v for k, v in body.model_dump(exclude={"purpose"}).items() if v is not None}
    if len(given) != 1:
        raise BadRequest("give exactly one of patient, study or accession")
    matches = reidentify(
        services.vault_opener(),
        services.audit,
        actor=token.actor,
        purpose=body.purpose,
        **given,
    )
    return ReidentifyResponse(found=bool(matches), studies=[_study(m) for m in matches])


def _reidentify_file(services: Services, path: str, actor: str, purpose: str) -> bytes:
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        dataset = dcmread(path)
    except (OSError, InvalidDicomError, ValueError, EOFError) as exc:
        raise MalformedInputError(
            f"the body is not readable DICOM ({type(exc).__name__})"
        ) from None
    try:
        result = reidentify_dataset(
            dataset, services.vault_opener(), services.audit, actor=actor, purpose=purpose
        )
    except VaultError as exc:
        if type(exc) is VaultError and "references no" in str(exc):  # audited as not-found
            raise NotFound(str(exc)) from None
        raise
    out = io.BytesIO()
    result.save_as(out, enforce_file_format=False)
    return out.getvalue()


@router.post(
    "/reidentify/instance",
    summary="Re-identify a returned DICOM object (role reidentify; audited)",
    openapi_extra=DICOM_BODY,
    response_class=Response,
    responses={
        200: {"content": {"application/dicom": {}}},
        403: {"description": "Refused"},
        404: {"description": "The object references no study the vault knows"},
    },
)
async def reidentify_instance(
    request: Request,
    services: ServicesDep,
    token: Annotated[Token, Depends(require("reidentify"))],
    purpose: Annotated[str, Header(alias="X-Dicomveil-Purpose", max_length=1000)] = "",
) -> Response:
    """Return a re-identified copy of an SR, PDF, SEG or KOS made on a de-identified study.

    The purpose goes in the ``X-Dicomveil-Purpose`` header (kept out of URLs and logs).
    """
    workspace = Workspace(services)
    try:
        (part,) = await receive_instances(request, workspace, services, single=True)
        data = await run_in_threadpool(
            _reidentify_file, services, str(part.path), token.actor, purpose
        )
    finally:
        workspace.remove()
    return Response(data, media_type="application/dicom")
