"""The FastAPI application factory."""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI

from harmonyspeech import __version__
from harmonyspeech.api.auth import ApiKeyVerifier
from harmonyspeech.api.errors import install_error_handlers
from harmonyspeech.api.middleware import (
    AuthMiddleware,
    BodyLimitMiddleware,
    NormalizePathMiddleware,
)
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


def create_app(runtime: EngineRuntime, *, verifier: ApiKeyVerifier | None = None) -> FastAPI:
    """Build the HTTP app over an engine runtime.

    Args:
        runtime: Config, pipelines and model clients.
        verifier: API-key checker; by default built from ``runtime.config.server.auth``.
    """
    config = runtime.config
    app = FastAPI(
        title="harmonyspeech",
        version=__version__,
        description="OpenAI-compatible speech engine with cross-request batching.",
    )
    app.state.runtime = runtime
    app.state.started_at = int(time.time())
    install_error_handlers(app)
    routers = (health, metrics, models, speech, transcriptions, vad, voices)
    for module in routers:
        app.include_router(module.router)
    verifier = verifier or ApiKeyVerifier.from_config(config.server.auth)
    # Starlette runs the last-added middleware first: paths are normalised, then auth, then size.
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.server.limits.max_upload_bytes)
    app.add_middleware(AuthMiddleware, verifier=verifier)
    app.add_middleware(NormalizePathMiddleware)
    return app
