"""Batches over HTTP: create (202 + opaque id), follow, fetch the manifest.

A batch's inputs are uploaded files (``multipart/form-data``: ``files`` fields, or one
``zip`` field) or a server-side folder under the configured import root (JSON
``{"folder": ...}``). The batch then runs in the background through
:mod:`dicomveil.pipeline.batch` (the same service as ``dicomveil batch``) to the server's
batch destination, with the priority asked for. Batch ids are opaque (no UID, no name).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from dicomveil.engine.keys import PseudonymKeys
from dicomveil.errors import ConfigError
from dicomveil.pipeline.batch import create_batch, resume_batch
from dicomveil.pipeline.batch_state import Priority, batch_status, list_batches
from dicomveil.pipeline.destination import local_root, open_destination
from dicomveil.profile.policy import Policy
from dicomveil.tokens import Token
from dicomveil.web.deps import ServicesDep, require
from dicomveil.web.errors import (
    BadRequest,
    Forbidden,
    HttpError,
    NotFound,
    UnsupportedMediaType,
)
from dicomveil.web.imports import extract_zip, move_into, resolve_import
from dicomveil.web.multipart import media_type, spool_related
from dicomveil.web.services import Services
from dicomveil.web.spool import Spool

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["batches"])

Ingest = Annotated[Token, Depends(require("ingest"))]
_PRIVATE: Final = ("staging", "quarantine")


class Conflict(HttpError):
    """The resource is not in a state that allows this (409)."""

    status = 409


class FolderBatch(BaseModel):
    """A batch of the files under a folder of the import root."""

    model_config = ConfigDict(extra="forbid")

    folder: str = Field(min_length=1, max_length=4096, description="Relative to the root.")
    priority: str = Field("ROUTINE", description="STAT, URGENT or ROUTINE.")


_CREATE_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": FolderBatch.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                        },
                        "zip": {"type": "string", "format": "binary"},
                        "priority": {"type": "string"},
                    },
                }
            },
        },
    }
}


def _tenant_prefix(services: Services, token: Token) -> str | None:
    """The pseudonym prefix of the token's organisation, which its batches carry as their
    ``organization`` (``None``: the token is bound to none and sees every batch).

    Raises
    ------
    Forbidden
        The token is bound to an organisation the server does not declare.
    """
    if not token.org:
        return None
    tenant = services.runtime.tenant_keys.get(token.org)
    if tenant is None:
        raise Forbidden("the token's organisation is not declared on this server")
    return tenant.prefix


def _batch_engine(services: Services, token: Token) -> tuple[Policy, bytes]:
    """The policy and pseudonym secret a batch created with ``token`` runs with: its
    organisation's prefix and own key (see :mod:`dicomveil.tenants`), else the server's."""
    if _tenant_prefix(services, token) is None:
        return services.policy, services.secret
    tenant = services.runtime.tenant_keys[token.org]
    policy = replace(services.policy, organization=tenant.prefix)
    return policy, tenant.secret if tenant.secret is not None else services.secret


def _public(status: dict[str, Any]) -> dict[str, Any]:
    """A status without server-side paths."""
    return {key: value for key, value in status.items() if key not in _PRIVATE}


def _status(services: Services, batch_id: str, token: Token) -> dict[str, Any]:
    prefix = _tenant_prefix(services, token)
    try:
        found = batch_status(batch_id, services.settings.home)
    except ConfigError:
        raise NotFound("no such batch") from None
    if prefix is not None and found.organization != prefix:
        raise NotFound("no such batch")  # another organisation's: as absent
    return _public(found.to_dict())


async def _uploaded(request: Request, services: Services, folder: Path) -> tuple[Path, str]:
    """Spool a multipart form of ``files`` (or one ``zip``) into ``folder``/inputs."""
    spool = folder / "parts"
    spool.mkdir(parents=True)
    parts = await spool_related(
        request.headers.get("content-type"),
        request.stream(),
        Spool(spool, budget=0),  # the batch reads its inputs later: files, not memory
        max_part=services.settings.max_body_bytes,
        kind="multipart/form-data",
    )
    inputs, priority = folder / "inputs", "ROUTINE"
    files: list[Path] = []
    zips: list[Path] = []
    for part in parts:
        name = media_type(part.headers.get("content-disposition"))[1].get("name", "")
        if name == "files":
            files.append(part.path)
        elif name == "zip":
            zips.append(part.path)
        elif name == "priority":
            priority = part.path.read_text(encoding="ascii", errors="replace").strip()
    if bool(files) == bool(zips) or len(zips) > 1:
        raise BadRequest("send 'files' fields, or exactly one 'zip' field")
    if zips:
        inputs.mkdir()
        limit = services.settings.max_body_bytes * 4
        if not await run_in_threadpool(extract_zip, zips[0], inputs, max_bytes=limit):
            raise BadRequest("the zip holds no file")
    else:
        move_into(files, inputs)
    shutil.rmtree(spool, ignore_errors=True)
    return inputs, priority


def _start(
    services: Services,
    source: Path,
    priority: str,
    token: Token,
    cleanup: Path | None,
    events: Any = None,
) -> str:
    """Create the batch (journal) now and run it in the background; return its id.

    ``events`` (the app's :class:`~dicomveil.events.Events`, if any) is told when the batch
    has shipped complete."""
    settings = services.settings
    policy, secret = _batch_engine(services, token)
    try:
        chosen = Priority.parse(priority)
    except (ConfigError, ValueError):
        raise BadRequest("priority is STAT, URGENT or ROUTINE") from None
    destination = settings.batch_destination
    try:
        info = create_batch(
            source,
            destination,
            policy=policy,
            key_id=PseudonymKeys(secret).key_id,
            priority=chosen,
            home=settings.home,
            local_dest=local_root(destination),
            tenant=token.org or None,
        )
    except ConfigError as exc:  # its message may name the folder: not for the client
        no_files = "no files found" in str(exc)
        raise BadRequest("the batch has no input files" if no_files else "no batch") from None

    def run() -> None:
        try:
            with open_destination(destination) as store:
                result = resume_batch(
                    info.batch_id,
                    store=store,
                    secret=secret,
                    home=settings.home,
                    vault=services.vault,
                    audit=services.audit,
                    actor=token.actor,
                    workers=settings.batch_workers,
                )
            if events is not None and result.status.state == "complete":
                status = result.status
                events.on_batch_shipped(status.batch_id, status.images, status.studies)
        finally:
            if cleanup is not None:
                shutil.rmtree(cleanup, ignore_errors=True)

    services.submit(run)
    return info.batch_id


@router.post(
    "/batches",
    summary="Create a batch (uploaded files, a zip, or a folder under the import root)",
    status_code=202,
    openapi_extra=_CREATE_BODY,
    responses={
        202: {"description": "Created; follow it at the Location"},
        400: {"description": "Malformed request, empty input"},
        403: {"description": "Folder outside the import root, or no import root"},
        413: {"description": "Too large"},
        415: {"description": "Neither JSON nor multipart/form-data"},
    },
)
async def create(request: Request, services: ServicesDep, token: Ingest) -> JSONResponse:
    """Create a batch and start it; answer 202 with its opaque id at once."""
    kind, _ = media_type(request.headers.get("content-type"))
    cleanup = None
    if kind == "application/json":
        try:
            body = FolderBatch.model_validate_json(await request.body())
        except ValueError:
            raise BadRequest("the body must be {'folder': ..., 'priority': ...}") from None
        source = resolve_import(services.settings.import_root, body.folder)
        priority = body.priority
    elif kind == "multipart/form-data":
        cleanup = services.workspace()
        try:
            source, priority = await _uploaded(request, services, cleanup)
        except BaseException:
            shutil.rmtree(cleanup, ignore_errors=True)
            raise
    else:
        raise UnsupportedMediaType("send application/json or multipart/form-data")
    try:
        events = getattr(request.app.state, "events", None)
        batch_id = await run_in_threadpool(
            _start, services, source, priority, token, cleanup, events
        )
    except BaseException:
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)
        raise
    location = f"/api/v1/batches/{batch_id}"
    return JSONResponse(
        {"batch_id": batch_id, "state": "created", "status_url": location},
        status_code=202,
        headers={"Location": location},
    )


@router.get("/batches", summary="List batches")
def list_all(services: ServicesDep, token: Ingest) -> list[dict[str, Any]]:
    """Every batch of this server (of the token's organisation, when it is bound to one),
    oldest first (state, counts; no paths)."""
    prefix = _tenant_prefix(services, token)
    found = list_batches(services.settings.home)
    return [_public(s.to_dict()) for s in found if prefix is None or s.organization == prefix]


@router.get(
    "/batches/{batch_id}",
    summary="A batch's state, counts and errors",
    responses={404: {"description": "No such batch"}},
)
def status(batch_id: str, services: ServicesDep, token: Ingest) -> dict[str, Any]:
    """State (created, running, complete, stopped, failed...), counts, failures (reasons)."""
    return _status(services, batch_id, token)


@router.get(
    "/batches/{batch_id}/manifest",
    summary="A complete batch's manifest",
    response_class=Response,
    responses={
        200: {"content": {"application/json": {}}},
        404: {"description": "No such batch"},
        409: {"description": "The batch is not complete"},
    },
)
def manifest(batch_id: str, services: ServicesDep, token: Ingest) -> Response:
    """The ``manifest.json`` the batch uploaded (PHI-free by construction)."""
    found = _status(services, batch_id, token)
    key = (found.get("manifest") or {}).get("key")
    if found["state"] != "complete" or not key:
        raise Conflict(f"the batch is {found['state']}: no manifest yet")
    with open_destination(found["destination"]) as store:
        data = store.get_bytes(key)
    json.loads(data)  # a manifest is JSON; anything else is an error, not an answer
    return Response(data, media_type="application/json")
