"""The one place where errors become HTTP responses in OpenAI's envelope.

``{"error": {"message", "type", "param", "code"}}`` with the status of the error class; request
validation failures are 400 (as OpenAI answers them), unknown routes 404, and anything unexpected
a 500 that is logged with its traceback.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from harmonyspeech.errors import (
    HarmonySpeechError,
    InternalError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
)

logger = logging.getLogger(__name__)


def error_response(error: HarmonySpeechError) -> JSONResponse:
    """The HTTP response for an engine error."""
    return JSONResponse(error.to_envelope(), status_code=error.status_code, headers=error.headers())


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that map every failure to the OpenAI envelope."""

    @app.exception_handler(HarmonySpeechError)
    async def _engine_error(_: Request, exc: HarmonySpeechError) -> JSONResponse:
        if exc.status_code >= 500:
            logger.warning("request failed: %s", exc.message)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_to_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(http_to_error(request, exc))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        return error_response(InternalError(f"internal error: {type(exc).__name__}"))


def validation_to_error(exc: RequestValidationError) -> InvalidRequestError:
    """The first validation problem as a 400 naming the offending parameter."""
    errors = exc.errors()
    if not errors:
        return InvalidRequestError("invalid request")
    first = errors[0]
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "form")]
    param = ".".join(loc) or None
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "missing":
        message = "field required"
    return InvalidRequestError(f"{param}: {message}" if param else message, param=param)


def http_to_error(request: Request, exc: StarletteHTTPException) -> HarmonySpeechError:
    """Framework HTTP errors (unknown route, wrong method, ...) in engine terms."""
    if exc.status_code == 404:
        return NotFoundError(f"no route for {request.method} {request.url.path}")
    if exc.status_code == 405:
        return MethodNotAllowedError(f"method {request.method} not allowed on {request.url.path}")
    if exc.status_code < 500:
        return InvalidRequestError(str(exc.detail))
    return InternalError(str(exc.detail))
