"""Liveness, readiness and the root description."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from harmonyspeech import __version__
from harmonyspeech.api.deps import get_runtime
from harmonyspeech.pipelines.runtime import EngineRuntime

router = APIRouter()
Runtime = Annotated[EngineRuntime, Depends(get_runtime)]


@router.get("/health")
async def health() -> dict[str, str]:
    """200 while the HTTP process is up, whatever the models are doing."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request, runtime: Runtime) -> JSONResponse:
    """200 only when every model instance is loaded and the server is not shutting down;
    503 otherwise, with each model's state."""
    statuses = await runtime.model_statuses()
    models = {name: {"state": s["state"], "error": s.get("error")} for name, s in statuses.items()}
    all_ready = all(s["state"] == "ready" for s in statuses.values())
    status = "ready" if all_ready else "not_ready"
    if request.app.state.lifecycle.draining:
        status = "draining"
    body = {"status": status, "models": models}
    return JSONResponse(body, status_code=200 if status == "ready" else 503)


@router.get("/")
@router.get("/v1")
@router.get("/v1/")
async def root(runtime: Runtime) -> dict[str, Any]:
    """A short description of the server. Clients probe it at their base URL: livekit's
    prewarm sends ``GET {base_url}/``, and OpenAI clients' base URL ends in ``/v1``."""
    return {
        "name": "harmonyspeech",
        "version": __version__,
        "models": [p.name for p in runtime.catalog],
        "endpoints": [
            "/v1/audio/speech",
            "/v1/audio/voices",
            "/v1/audio/voices/{voice_id}",
            "/v1/audio/embeddings",
            "/v1/audio/models",
            "/v1/audio/transcriptions",
            "/v1/audio/translations",
            "/v1/audio/vad",
            "/v1/models",
            "/health",
            "/ready",
            "/metrics",
            "/docs",
        ],
    }
