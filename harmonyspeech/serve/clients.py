"""``ModelClient`` over a Ray Serve deployment handle."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

from ray import exceptions as ray_errors
from ray.serve import exceptions as serve_errors
from ray.serve.handle import DeploymentHandle

from harmonyspeech.engine.items import Priority
from harmonyspeech.errors import HarmonySpeechError, ModelLoadError, OverloadedError

logger = logging.getLogger(__name__)

REPLICA_LOST_GRACE_S = 30.0
"""How long a work item keeps being sent again after the replica running it died: long enough
for Serve to notice the death and start a replacement (seconds), short enough that a model that
cannot come back answers 503 rather than holding requests until their deadline."""
RETRY_BACKOFF_S = (0.25, 0.5, 1.0, 2.0)
"""Pauses between those attempts (the last one repeats)."""


class ServeModelClient:
    """Calls a ``ModelServer`` deployment; Ray's errors come back as engine errors.

    A work item whose replica dies under it (a crash, an OOM kill, a lost node) is sent again
    for up to ``REPLICA_LOST_GRACE_S``: inference is a pure function of the item (its seed
    travels with it), so the retry returns what the first attempt would have, and Serve routes
    it to a live or a restarted replica. The caller's deadline still bounds it all.
    """

    def __init__(self, name: str, handle: DeploymentHandle):
        self.name = name
        self._handle = handle

    async def infer(self, payload: Any, *, priority: Priority, timeout_s: float | None) -> Any:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        give_up_at: float | None = None
        for attempt in itertools.count():
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await self._handle.infer.remote(payload, int(priority), remaining)
            except Exception as exc:
                give_up_at = give_up_at or time.monotonic() + REPLICA_LOST_GRACE_S
                if not _replica_lost(exc) or time.monotonic() >= give_up_at:
                    raise self._translate(exc) from exc
                logger.warning(
                    "model %r: replica lost (%s); sending the item again",
                    self.name,
                    type(exc).__name__,
                )
            await asyncio.sleep(RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)])
        raise AssertionError("unreachable: attempts end by returning or raising")

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


def _replica_lost(exc: Exception) -> bool:
    """Whether ``exc`` says the replica went away (rather than the item failing on it)."""
    if isinstance(exc, ray_errors.RayActorError):
        return True
    cause = getattr(exc, "cause", None)
    return isinstance(exc, ray_errors.RayTaskError) and isinstance(cause, ray_errors.RayActorError)
