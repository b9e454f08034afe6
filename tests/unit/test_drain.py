"""Draining for a graceful shutdown: requests in flight are counted and finish; new ones get
503 with Retry-After; probes still answer and are not waited for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from harmonyspeech.api.errors import install_error_handlers
from harmonyspeech.api.middleware import DrainMiddleware, Lifecycle


def app_with_a_gated_stream(lifecycle: Lifecycle, gate: asyncio.Event) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app, routes=app.router.routes)

    @app.get("/v1/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first "
            await gate.wait()
            yield b"last"

        return StreamingResponse(chunks())

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "in_flight": str(lifecycle.in_flight)}

    app.add_middleware(DrainMiddleware, lifecycle=lifecycle)
    return app


async def test_a_draining_app_finishes_what_it_holds_and_refuses_the_rest() -> None:
    lifecycle, gate = Lifecycle(), asyncio.Event()
    transport = httpx.ASGITransport(app=app_with_a_gated_stream(lifecycle, gate))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        held = asyncio.ensure_future(client.get("/v1/stream"))
        for _ in range(100):  # bounded: the held request reaches its gate in a few loop turns
            if lifecycle.in_flight:
                break
            await asyncio.sleep(0.01)
        assert lifecycle.in_flight == 1
        lifecycle.draining = True
        refused = await client.get("/v1/stream")
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert refused.json()["error"]["code"] == "shutting_down"
        probe = await client.get("/health")
        assert probe.status_code == 200 and probe.json()["in_flight"] == "1"
        assert not held.done()
        gate.set()
        response = await asyncio.wait_for(held, timeout=10)
        assert response.status_code == 200 and response.content == b"first last"
        assert lifecycle.in_flight == 0
