"""A client that hangs up is no server failure: neither while its request is read, nor when
Ray cancels the request under Serve."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi import FastAPI, Request
from ray.exceptions import TaskCancelledError

from harmonyspeech.api.errors import install_error_handlers
from harmonyspeech.serve.deployments import CancelledReceiveIsDisconnect

SCOPE = {"type": "http", "method": "POST", "path": "/upload", "headers": [], "query_string": b""}


def _upload_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app, routes=app.router.routes)

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    return app


async def _call(app: Any, receive: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(dict(SCOPE), receive, send)
    return sent


async def test_a_client_leaving_while_its_upload_is_read_is_no_unhandled_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    messages = iter(
        [{"type": "http.request", "body": b"part", "more_body": True}, {"type": "http.disconnect"}]
    )

    async def receive() -> dict[str, Any]:
        return next(messages)

    sent = await _call(_upload_app(), receive)
    assert sent[0]["status"] == 499
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_receive_that_ray_cancelled_reads_as_the_clients_disconnect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Serve's receive may raise TaskCancelledError for a cancelled request: that was an
    # "unhandled error" with its traceback, counted as a 500.
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(await receive())

    async def cancelled() -> dict[str, Any]:
        raise TaskCancelledError()

    await _call(CancelledReceiveIsDisconnect(app), cancelled)
    assert seen == [{"type": "http.disconnect"}]
    sent = await _call(CancelledReceiveIsDisconnect(_upload_app()), cancelled)
    assert sent[0]["status"] == 499
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
