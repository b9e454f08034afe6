"""``ModelClient`` over a Ray Serve deployment handle."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Any

from ray import exceptions as ray_errors
from ray.serve import exceptions as serve_errors
from ray.serve.handle import DeploymentHandle

from harmonyspeech.engine.items import Priority
from harmonyspeech.errors import (
    DeadlineExceededError,
    HarmonySpeechError,
    ModelLoadError,
    OverloadedError,
)

logger = logging.getLogger(__name__)

REPLICA_LOST_ATTEMPTS = 3
"""Most times one work item is sent: an item that keeps killing replicas (say, one that runs
them out of memory) must not take down every replacement, nor its batch-mates, for long."""
REPLICA_LOST_GRACE_S = 60.0
"""How long, from the first replica loss, an item waits for a replacement to take it (Serve
notices the death, starts a replica and loads its model); past it the answer is 503."""
RETRY_BACKOFF_S = (0.5, 1.0)
"""Pause before the second and third attempts, each scaled by a random 0.5-1 so the items of a
crashed replica do not all land on its replacement at the same instant."""


@dataclass(frozen=True)
class Refusal:
    """An item's expected refusal, returned by a model replica instead of raised: an invalid
    input (4xx), a full queue (503), a passed deadline (504) or a model that failed to load
    (503; its load logged why, once). Serve logs every exception a replica raises as a failed
    request, with its traceback, and a burst of refusals under load would bury the model
    failures in those logs. The client raises ``error`` again."""

    error: HarmonySpeechError

    @staticmethod
    def expected(error: HarmonySpeechError) -> bool:
        """Whether ``error`` is a refusal rather than a model failure."""
        refusals = OverloadedError | DeadlineExceededError | ModelLoadError
        return error.status_code < 500 or isinstance(error, refusals)


class ServeModelClient:
    """Calls a ``ModelServer`` deployment; Ray's errors come back as engine errors.

    A work item whose replica died under it (a crash, an OOM kill, a lost node) is sent again,
    up to ``REPLICA_LOST_ATTEMPTS`` times and ``REPLICA_LOST_GRACE_S`` after the first loss:
    inference is a pure function of the item (its seed travels with it), so the retry returns
    what the first attempt would have, and Serve routes it to a live or a restarted replica.
    Only a death the replica cannot come back from is retried (``ActorDiedError``): an
    unreachable replica may still be running the item. The request's deadline bounds it all.
    A caller that gives up on an item (cancelled, or past the deadline) cancels its call, so
    that the item leaves the model's queue.
    """

    def __init__(self, name: str, handle: DeploymentHandle):
        self.name = name
        self._handle = handle

    async def infer(
        self,
        payload: Any,
        *,
        priority: Priority,
        timeout_s: float | None,
        admitted: bool = False,
    ) -> Any:
        clock = time.monotonic
        deadline = math.inf if timeout_s is None else clock() + timeout_s
        give_up_at = math.inf
        attempt = 1
        while True:
            limit = min(deadline, give_up_at) - clock()
            if limit <= 0:
                raise self._gave_up(deadline, clock())
            call = self._handle.infer.remote(
                payload, int(priority), _finite(deadline - clock()), admitted
            )
            try:
                result = await call if math.isinf(limit) else await asyncio.wait_for(call, limit)
            except TimeoutError:
                call.cancel()
                raise self._gave_up(deadline, clock()) from None
            except asyncio.CancelledError:
                # Serve leaves a call running when the task awaiting it is cancelled (it only
                # cancels the calls of a cancelled request): take the item out of the queue.
                call.cancel()
                raise
            except Exception as exc:
                if not _replica_lost(exc) or attempt == REPLICA_LOST_ATTEMPTS:
                    raise self._translate(exc) from exc
                logger.warning(
                    "model %r: the replica running an item died; sending it again (attempt %d)",
                    self.name,
                    attempt + 1,
                )
            else:
                if isinstance(result, Refusal):
                    raise result.error
                return result
            give_up_at = min(give_up_at, clock() + REPLICA_LOST_GRACE_S)
            await asyncio.sleep(RETRY_BACKOFF_S[attempt - 1] * random.uniform(0.5, 1.0))
            attempt += 1

    def _gave_up(self, deadline: float, now: float) -> HarmonySpeechError:
        if now >= deadline:
            return DeadlineExceededError(f"model {self.name!r}: deadline passed")
        return ModelLoadError(
            f"model {self.name!r} is unavailable: its replica died and no replacement took "
            f"the work within {REPLICA_LOST_GRACE_S:.0f} s"
        )

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


def _finite(seconds: float) -> float | None:
    return None if math.isinf(seconds) else max(0.0, seconds)


def _replica_lost(exc: Exception) -> bool:
    """Whether ``exc`` says the replica died (rather than the item failing on it)."""
    if isinstance(exc, ray_errors.ActorDiedError):
        return True
    cause = getattr(exc, "cause", None)
    return isinstance(exc, ray_errors.RayTaskError) and isinstance(cause, ray_errors.ActorDiedError)
