"""The FastAPI application factory."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from harmonyspeech import __version__
from harmonyspeech.api.auth import ApiKeyVerifier
from harmonyspeech.api.errors import install_error_handlers
from harmonyspeech.api.middleware import (
    AuthMiddleware,
    BodyLimitMiddleware,
    DrainMiddleware,
    HeadMiddleware,
    Lifecycle,
    NormalizePathMiddleware,
    RequestMetricsMiddleware,
)
from harmonyspeech.api.ratelimit import RateLimiter, RateLimitMiddleware
from harmonyspeech.api.routes import (
    health,
    metrics,
    models,
    speech,
    transcriptions,
    vad,
    voices,
)
from harmonyspeech.pipelines.runtime import EngineRuntime

logger = logging.getLogger(__name__)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    # The rate limits' Redis connections close with the app (Serve runs this on shutdown).
    limiter: RateLimiter | None = app.state.rate_limiter
    if limiter is not None:
        await limiter.aclose()


def create_app(
    runtime: EngineRuntime,
    *,
    verifier: ApiKeyVerifier | None = None,
    rate_limiter: RateLimiter | None = None,
    lifecycle: Lifecycle | None = None,
) -> FastAPI:
    """Build the HTTP app over an engine runtime.

    Args:
        runtime: Config, pipelines and model clients.
        verifier: API-key checker; by default built from ``runtime.config.server.auth``.
        rate_limiter: Per-key limits; by default built from ``server.rate_limits`` (none when
            it sets no limit). Kept on ``app.state.rate_limiter``.
        lifecycle: Draining state and requests in flight, for graceful shutdown; by default
            a fresh one. Kept on ``app.state.lifecycle``.
    """
    config = runtime.config
    app = FastAPI(
        title="harmonyspeech",
        version=__version__,
        description="OpenAI-compatible speech engine with cross-request batching.",
        lifespan=_lifespan,
    )
    app.state.runtime = runtime
    app.state.started_at = int(time.time())
    routers = (health, metrics, models, speech, transcriptions, vad, voices)
    for module in routers:
        app.include_router(module.router)
    # FastAPI wraps an included router in one route without a path; the routers' own routes
    # are what middleware and error handling match paths against.
    routes = [*app.router.routes, *(route for m in routers for route in m.router.routes)]
    install_error_handlers(app, routes=routes)
    verifier = verifier or ApiKeyVerifier.from_config(config.server.auth)
    if rate_limiter is None:
        rate_limiter = RateLimiter.from_config(config.server.rate_limits, labels=verifier.labels)
    app.state.rate_limiter = rate_limiter
    # Starlette runs the last-added middleware first: paths are normalised, then CORS answers
    # preflights and marks every answer (errors too, so pages can read them), then the request
    # is counted (whatever answers it), then refused if the app drains, then auth, then rate
    # limits, then size, then HEAD.
    app.add_middleware(HeadMiddleware, routes=routes)
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.server.limits.max_upload_bytes)
    if rate_limiter is not None:
        # After auth (it counts by key), before the body is read (refusals cost no upload).
        app.add_middleware(RateLimitMiddleware, limiter=rate_limiter)
    app.add_middleware(AuthMiddleware, verifier=verifier)
    app.state.lifecycle = lifecycle or Lifecycle()
    app.add_middleware(DrainMiddleware, lifecycle=app.state.lifecycle)
    app.add_middleware(RequestMetricsMiddleware, routes=routes)
    cors = config.server.cors
    if cors.allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors.allow_origins,
            allow_methods=["*"],
            allow_headers=["*"],  # echoes what a preflight asks for, Authorization included
            expose_headers=["*"],  # Retry-After, the validation scores
            max_age=cors.max_age_s,
        )
    app.add_middleware(NormalizePathMiddleware)
    return app
