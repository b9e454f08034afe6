"""The one place where errors become HTTP responses in OpenAI's envelope.

``{"error": {"message", "type", "param", "code"}}`` with the status of the error class; request
validation failures are 400 (as OpenAI answers them), unknown routes 404, and anything unexpected
a 500 that is logged with its traceback. Engine errors of 500 and more are logged in one line,
except bursts of an overloaded server's 503s and 504s (see ``RepeatsSummarised``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Match

from harmonyspeech.api.metrics import record_error
from harmonyspeech.api.middleware import CLIENT_CLOSED_REQUEST
from harmonyspeech.api.streaming import StreamBrokenOff
from harmonyspeech.errors import (
    DeadlineExceededError,
    HarmonySpeechError,
    InternalError,
    InvalidRequestError,
    MethodNotAllowedError,
    ModelLoadError,
    NotFoundError,
    OverloadedError,
    invalid_field,
)

logger = logging.getLogger(__name__)


REPEAT_WINDOW_S = 10.0
"""In a burst of failures of one kind from an overloaded server, the first is logged and those
in this many seconds after it are counted in one line: every refused request fails alike, and a
line for each buried the log. ``harmonyspeech_errors`` still counts every one."""

LOAD_FAILURES = (OverloadedError, DeadlineExceededError, ModelLoadError)
"""The errors that come in bursts when the server is overloaded or a model is down."""

_NUMBER = re.compile(r"\d+(\.\d+)?")


@dataclass
class _Window:
    first: str
    held_back: int = 0


class RepeatsSummarised:
    """Logs the first failure of a kind, counts those of the same kind in the window after it,
    and logs their count when the window closes.

    A kind is the error's class, code and message with its numbers left out (the same refusal
    names another wait, the same model stays apart). Used from the app's event loop only.
    """

    def __init__(self, window_s: float = REPEAT_WINDOW_S):
        self.window_s = window_s
        self._windows: dict[tuple[str, str, str], _Window] = {}

    def failed(self, error: HarmonySpeechError) -> None:
        """Log ``error`` (a 5xx), or count it if its kind's window is open."""
        kind = (type(error).__name__, error.code or "", _NUMBER.sub("#", error.message))
        window = self._windows.get(kind)
        if window is not None:
            window.held_back += 1
            return
        logger.warning("request failed: %s", error.message)
        self._windows[kind] = _Window(error.message)
        asyncio.get_running_loop().call_later(self.window_s, self._close, kind)

    def _close(self, kind: tuple[str, str, str]) -> None:
        window = self._windows.pop(kind)
        if window.held_back:
            logger.warning(
                "%d more requests failed like this in the %g s after it: %s",
                window.held_back,
                self.window_s,
                window.first,
            )


_load_failures = RepeatsSummarised()


def error_response(error: HarmonySpeechError) -> JSONResponse:
    """The HTTP response for an engine error (counted in ``harmonyspeech_errors``)."""
    record_error(error)
    return JSONResponse(error.to_envelope(), status_code=error.status_code, headers=error.headers())


def install_error_handlers(app: FastAPI, *, routes: Sequence[BaseRoute]) -> None:
    """Register the handlers that map every failure to the OpenAI envelope.

    Args:
        app: The app.
        routes: Its routes with a path, for the ``Allow`` header of a 405.
    """

    @app.exception_handler(HarmonySpeechError)
    async def _engine_error(_: Request, exc: HarmonySpeechError) -> JSONResponse:
        if exc.status_code >= 500:
            # A 429 is an OverloadedError too, and not logged.
            if isinstance(exc, LOAD_FAILURES):
                _load_failures.failed(exc)
            else:
                logger.warning("request failed: %s", exc.message)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_to_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(http_to_error(request, exc, routes))

    @app.exception_handler(ClientDisconnect)
    async def _client_left(_: Request, exc: ClientDisconnect) -> Response:
        # The client left while its request was read: no one to answer, nothing failed.
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        cause = exc.__cause__
        if isinstance(exc, StreamBrokenOff) and isinstance(cause, HarmonySpeechError):
            # An engine error broke off a started stream, and was logged where it did. Nothing
            # more can be sent; this counts it by its type.
            return error_response(cause)
        logger.exception("unhandled error")
        return error_response(InternalError(f"internal error: {type(exc).__name__}"))


_NOT_A_JSON_OBJECT = {"missing", "model_attributes_type", "dict_type"}
"""Validation errors of a whole JSON body: none, another JSON type, or not sent as JSON."""


def validation_to_error(exc: RequestValidationError) -> InvalidRequestError:
    """The first validation problem as a 400 naming the offending parameter."""
    errors = exc.errors()
    if not errors:
        return InvalidRequestError("invalid request")
    first = errors[0]
    if first.get("type") == "json_invalid":
        # The location is a character offset into the body, not a parameter.
        reason = first.get("ctx", {}).get("error", "JSON decode error")
        position = first["loc"][-1]
        return InvalidRequestError(
            f"request body is not valid JSON: {reason} at character {position}"
        )
    if tuple(first.get("loc", ())) == ("body",) and first.get("type") in _NOT_A_JSON_OBJECT:
        return InvalidRequestError(
            "the request body must be a JSON object, sent with Content-Type: application/json"
        )
    if str(first.get("msg", "")).removeprefix("Value error, ").startswith("Expected UploadFile"):
        # A multipart part without a filename arrives as a text field.
        first = {**first, "msg": "expected a file: send it as a multipart part with a filename"}
    return invalid_field(first, skip=("body", "query", "form"))


def allowed_methods(request: Request, routes: Sequence[BaseRoute]) -> tuple[str, ...]:
    """Every method the ``routes`` at the request's path take, for a 405's ``Allow``
    (Starlette's own names only the first route's, and voices has one route per method); HEAD
    with GET (see ``HeadMiddleware``)."""
    methods: set[str] = set()
    for route in routes:
        route_methods = getattr(route, "methods", None)
        if route_methods and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route_methods
    if "GET" in methods:
        methods.add("HEAD")
    return tuple(sorted(methods))


def http_to_error(
    request: Request, exc: StarletteHTTPException, routes: Sequence[BaseRoute] = ()
) -> HarmonySpeechError:
    """Framework HTTP errors (unknown route, wrong method, ...) in engine terms; ``routes``
    name the methods a 405 allows."""
    if exc.status_code == 404:
        return NotFoundError(f"no route for {request.method} {request.url.path}")
    if exc.status_code == 405:
        return MethodNotAllowedError(
            f"method {request.method} not allowed on {request.url.path}",
            allowed=allowed_methods(request, routes),
        )
    if isinstance(exc.__cause__, UnicodeDecodeError):
        # FastAPI's "There was an error parsing the body", said precisely.
        cause = exc.__cause__
        return InvalidRequestError(
            f"request body is not valid {cause.encoding}: {cause.reason} at byte {cause.start}"
        )
    if isinstance(exc.__cause__, RecursionError):
        return InvalidRequestError("request body is nested too deeply")
    if exc.status_code < 500:
        return InvalidRequestError(str(exc.detail))
    return InternalError(str(exc.detail))
