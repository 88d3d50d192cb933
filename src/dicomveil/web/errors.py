"""Errors at the HTTP boundary: one table from exception type to status, one body format.

Every error body is ``{"error": {"status": 404, "code": "ObjectNotFound", "message": ...}}``.
Messages of 4xx answers are our exceptions' messages, which name keywords and opaque ids,
never values (see :mod:`dicomveil.errors`); 5xx answers say only what kind of failure it was
and carry an ``error_id`` that is also in the server log. No stack trace, request value or
path is ever put in a body, and request-validation errors name the parameter, not its value.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from typing import Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from dicomveil.errors import (
    AccessDenied,
    AuditError,
    ConfigError,
    DeidentificationError,
    DicomveilError,
    MalformedInputError,
    ObjectNotFound,
    QueryError,
    QueueError,
    StorageError,
    StorageUnavailable,
    StudyIndexError,
    UnsupportedInputError,
    VaultError,
)

__all__ = [
    "STATUS",
    "BadRequest",
    "Forbidden",
    "HttpError",
    "NotAcceptable",
    "NotFound",
    "PayloadTooLarge",
    "Unauthorized",
    "UnsupportedMediaType",
    "error_response",
    "install_error_handlers",
    "server_error",
    "status_for",
]

log = logging.getLogger("dicomveil.web")


class HttpError(HTTPException):
    """An error that is already an HTTP answer (raised by the web layer itself)."""

    status: int = 400

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(self.status, message, headers)
        self.message = message


class BadRequest(HttpError):
    """The request is malformed (400)."""

    status = 400


class Unauthorized(HttpError):
    """No or an invalid bearer token (401)."""

    status = 401

    def __init__(self, message: str = "a valid bearer token is required") -> None:
        super().__init__(message, {"WWW-Authenticate": "Bearer"})


class Forbidden(HttpError):
    """The token's role does not allow this (403), or a path lies outside the import root."""

    status = 403


class NotFound(HttpError):
    """No such resource (404)."""

    status = 404


class NotAcceptable(HttpError):
    """None of the accepted media types can be produced (406)."""

    status = 406


class PayloadTooLarge(HttpError):
    """The body or one of its parts exceeds the configured limit (413)."""

    status = 413


class UnsupportedMediaType(HttpError):
    """The body's media type is not one this route takes (415)."""

    status = 415


STATUS: Final[dict[type[Exception], int]] = {
    QueryError: 400,
    MalformedInputError: 400,
    UnsupportedInputError: 422,
    DeidentificationError: 422,
    AccessDenied: 403,
    ObjectNotFound: 404,
    StorageUnavailable: 503,
    StorageError: 502,
    StudyIndexError: 503,
    VaultError: 503,
    AuditError: 503,
    QueueError: 503,
    ConfigError: 500,
    DicomveilError: 500,
}
"""Exception type → HTTP status; the most specific entry in an exception's MRO wins."""

_GENERIC: Final = {
    500: "internal server error",
    502: "the archive storage failed",
    503: "a backing service is unavailable",
}


def status_for(exc: BaseException) -> int:
    """Return the HTTP status for ``exc`` from :data:`STATUS` (500 when none applies)."""
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 500


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Build the one error body format."""
    body = {"error": {"status": status, "code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def server_error(exc: BaseException, status: int = 500) -> JSONResponse:
    """Log ``exc`` (type, frames, and the message of our own PHI-free exceptions only) and
    return a generic 5xx body with the error id of the log line."""
    error_id = uuid.uuid4().hex[:12]
    frames = "; ".join(
        f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}:{frame.name}"
        for frame in traceback.extract_tb(exc.__traceback__)[-6:]
    )
    # our exceptions' messages are PHI-free; anything else logs its type and frames only
    detail = str(exc) if isinstance(exc, DicomveilError) else ""
    log.error("error %s: %s %s [%s]", error_id, type(exc).__name__, detail, frames)
    body = {
        "error": {
            "status": status,
            "code": type(exc).__name__ if isinstance(exc, DicomveilError) else "InternalError",
            "message": _GENERIC.get(status, _GENERIC[500]),
            "error_id": error_id,
        }
    }
    return JSONResponse(body, status_code=status)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = type(exc).__name__ if isinstance(exc, HttpError) else f"HTTP{exc.status_code}"
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, message, headers)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors()[:10]:
        where = ".".join(str(part) for part in error.get("loc", ()))
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return error_response(400, "InvalidRequest", "; ".join(problems) or "invalid request")


async def _on_dicomveil(request: Request, exc: Exception) -> JSONResponse:
    status = status_for(exc)
    if status >= 500:
        return server_error(exc, status)
    return error_response(status, type(exc).__name__, str(exc))


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into the one error body.

    Exceptions nobody expects are answered by :class:`~dicomveil.web.middleware.Observe`
    (outermost), so that no framework prints them with their message.
    """
    app.add_exception_handler(HTTPException, _on_http)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(DicomveilError, _on_dicomveil)
