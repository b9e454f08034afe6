"""FastAPI dependencies shared by the routes."""

from __future__ import annotations

from fastapi import Request

from harmonyspeech.pipelines.runtime import EngineRuntime


def get_runtime(request: Request) -> EngineRuntime:
    """The engine runtime the app was created with."""
    runtime: EngineRuntime = request.app.state.runtime
    return runtime
