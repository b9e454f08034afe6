"""ASGI middleware applied to every request before routing."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from harmonyspeech.api.auth import ApiKeyVerifier
from harmonyspeech.api.metrics import record_error, record_request
from harmonyspeech.errors import HarmonySpeechError, OverloadedError, PayloadTooLargeError

_SLASHES = re.compile(r"/{2,}")
API_KEY_STATE = "api_key_hash"
"""``scope["state"]`` entry holding the authenticated key's hash (rate limits count by it)."""
_BODY_METHODS = {"POST", "PUT", "PATCH"}
_KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
"""Methods counted by name in request metrics; any other is ``other`` (clients choose the
method string, and a metric's label values must stay few)."""


def is_api_path(path: str) -> bool:
    """Whether ``path`` is under the OpenAI-style API (``/v1``): what keys and rate limits
    guard; health, readiness, metrics and ``/`` stay open."""
    return path == "/v1" or path.startswith("/v1/")


async def send_error(send: Send, error: HarmonySpeechError) -> None:
    """Answer with an engine error in the OpenAI envelope, outside FastAPI (counted in
    ``harmonyspeech_errors``)."""
    record_error(error)
    body = json.dumps(error.to_envelope()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers().items()]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class NormalizePathMiddleware:
    """Collapse repeated slashes (``/v1//audio/speech``) and drop a trailing one
    (``/v1/models/``), which some clients send. Rather than FastAPI's 307 to the path without
    it: that costs a round trip, and behind a TLS proxy its absolute ``Location`` points at
    ``http://``."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = _SLASHES.sub("/", scope["path"])
            if len(path) > 1:
                path = path.rstrip("/")
            if path != scope["path"]:
                scope = dict(scope, path=path)
        await self.app(scope, receive, send)


class Lifecycle:
    """Whether the app still takes new requests, and how many it is answering (requests in
    flight, streams until their last byte): what a graceful shutdown waits for."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0


DRAIN_EXEMPT = ("/health", "/ready", "/metrics")
"""Paths that still answer while draining, and that a shutdown does not wait for: probes
must see the server go unready."""


class DrainMiddleware:
    """Count requests in flight; once ``lifecycle.draining`` is set, refuse new ones with 503
    and ``Retry-After`` (health, readiness and metrics still answer, uncounted), so that a
    shutdown can wait for the requests it let in.

    Args:
        lifecycle: The app's :class:`Lifecycle`.
    """

    def __init__(self, app: ASGIApp, *, lifecycle: Lifecycle):
        self.app = app
        self.lifecycle = lifecycle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in DRAIN_EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.lifecycle.draining:
            await send_error(send, shutting_down())
            return
        self.lifecycle.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.lifecycle.in_flight -= 1


def shutting_down() -> OverloadedError:
    """The answer to a request that arrives while the server drains."""
    return OverloadedError(
        "the server is shutting down; retry on another replica or later",
        code="shutting_down",
        retry_after_s=SHUTDOWN_RETRY_AFTER_S,
    )


SHUTDOWN_RETRY_AFTER_S = 5


class HeadMiddleware:
    """Answer ``HEAD`` on every ``GET`` route as ``GET`` would, without the body.

    RFC 9110 requires HEAD wherever GET is served, and probes use it (``curl -I``, load
    balancers); FastAPI's routes, unlike Starlette's, take only the methods they declare. A
    HEAD on a path without a GET route goes on as it is, to its 405.

    Args:
        routes: The app's routes.
    """

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute]):
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        as_get = dict(scope, method="GET")
        if not any(route.matches(as_get)[0] is Match.FULL for route in self.routes):
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app(as_get, receive, without_body)


CLIENT_CLOSED_REQUEST = 499
"""Status recorded for a request whose client left before its answer started (nginx's, and Ray
Serve's, convention); nothing is sent."""


class RequestMetricsMiddleware:
    """Count every answered request by route template (``/v1/audio/voices/{voice_id}``, not
    the id; ``unmatched`` for unknown paths), method and status.

    Args:
        routes: The routes to match, in order; those without a path template (a FastAPI
            included router) are skipped, so pass the routers' own routes as well.
    """

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute]):
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what an exception escaping the app becomes

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        except asyncio.CancelledError:
            # The client went away (the server cancels its request): not the server's failure.
            if status == 500:
                status = CLIENT_CLOSED_REQUEST
            raise
        finally:
            method = scope["method"] if scope["method"] in _KNOWN_METHODS else "other"
            record_request(self._endpoint(scope), method, status)

    def _endpoint(self, scope: Scope) -> str:
        for route in self.routes:
            path = getattr(route, "path", None)
            if isinstance(path, str) and route.matches(scope)[0] is not Match.NONE:
                return path
        return "unmatched"


class BodyLimitMiddleware:
    """Reject request bodies over ``max_bytes`` with 413 before any parsing.

    The declared ``Content-Length`` is checked first; bodies without one (chunked) are read up to
    the limit and replayed to the application, so no route ever sees an over-limit body.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await send_error(send, self._too_large(scope))
            return
        body = await self._read_body(receive)
        if body is None:
            await send_error(send, self._too_large(scope))
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _too_large(self, scope: Scope) -> PayloadTooLargeError:
        # Uploads are what grows a multipart body; a JSON body has no one parameter to blame.
        multipart = (_header(scope, b"content-type") or "").lower().startswith("multipart/")
        return PayloadTooLargeError(
            f"request body exceeds the limit of {self.max_bytes} bytes",
            param="file" if multipart else None,
        )


class AuthMiddleware:
    """Require a valid API key on ``/v1/*`` when keys are configured."""

    def __init__(self, app: ASGIApp, *, verifier: ApiKeyVerifier):
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._protects(scope):
            try:
                digest = self.verifier.verify(_header(scope, b"authorization"))
            except HarmonySpeechError as exc:
                await send_error(send, exc)
                return
            scope.setdefault("state", {})[API_KEY_STATE] = digest
        await self.app(scope, receive, send)

    def _protects(self, scope: Scope) -> bool:
        # CORS preflights carry no credentials; health and discovery outside /v1 stay open.
        return (
            self.verifier.enabled
            and scope["type"] == "http"
            and is_api_path(scope["path"])
            and scope["method"] != "OPTIONS"
        )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        # After the body, pass through so disconnects still reach streaming responses.
        message: dict[str, Any] = await receive()
        return message

    return replay
