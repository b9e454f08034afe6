"""``ModelClient`` over a Ray Serve deployment handle."""

from __future__ import annotations

from typing import Any

from ray import exceptions as ray_errors
from ray.serve import exceptions as serve_errors
from ray.serve.handle import DeploymentHandle

from harmonyspeech.engine.items import Priority
from harmonyspeech.errors import HarmonySpeechError, ModelLoadError, OverloadedError


class ServeModelClient:
    """Calls a ``ModelServer`` deployment; Ray's errors come back as engine errors."""

    def __init__(self, name: str, handle: DeploymentHandle):
        self.name = name
        self._handle = handle

    async def infer(self, payload: Any, *, priority: Priority, timeout_s: float | None) -> Any:
        try:
            return await self._handle.infer.remote(payload, int(priority), timeout_s)
        except Exception as exc:
            raise self._translate(exc) from exc

    async def status(self) -> dict[str, Any]:
        try:
            status: dict[str, Any] = await self._handle.status.remote()
        except Exception as exc:
            raise self._translate(exc) from exc
        return status

    def _translate(self, exc: Exception) -> Exception:
        if isinstance(exc, HarmonySpeechError):
            return exc
        cause = getattr(exc, "cause", None)
        if isinstance(exc, ray_errors.RayTaskError) and isinstance(cause, HarmonySpeechError):
            return cause
        if isinstance(exc, serve_errors.BackPressureError):
            return OverloadedError(f"model {self.name!r} is at capacity; retry shortly")
        if isinstance(exc, ray_errors.RayError | serve_errors.RayServeException):
            return ModelLoadError(f"model {self.name!r} is unavailable: {type(exc).__name__}")
        return exc
