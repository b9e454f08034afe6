"""How pipelines reach a model: the ``ModelClient`` protocol and its in-process form.

A pipeline stage calls ``client.infer(payload, ...)`` without knowing whether the model's worker
lives in the same process (``LocalModelClient``: tests, batch jobs, benchmarks) or behind a Ray
Serve deployment handle (``harmonyspeech.serve.clients.ServeModelClient``).
"""

from __future__ import annotations

from typing import Any, Protocol

from harmonyspeech.engine.items import Priority
from harmonyspeech.engine.worker import ModelWorker, WorkerState


class ModelClient(Protocol):
    """A model instance as pipelines see it."""

    async def infer(
        self,
        payload: Any,
        *,
        priority: Priority,
        timeout_s: float | None,
        admitted: bool = False,
    ) -> Any:
        """Run one payload through the model's scheduler; raises the engine's errors.

        ``admitted``: the payload belongs to a request already under way, so the model's queue
        bound does not refuse it (``Scheduler.submit``).
        """
        ...

    async def status(self) -> dict[str, Any]:
        """``{"state": ..., "error": ..., "stats": {...}, "info": {...}}`` for the instance."""
        ...


class LocalModelClient:
    """A ``ModelClient`` over a worker in this process."""

    def __init__(self, worker: ModelWorker):
        self.worker = worker

    async def infer(
        self,
        payload: Any,
        *,
        priority: Priority,
        timeout_s: float | None,
        admitted: bool = False,
    ) -> Any:
        return await self.worker.infer(
            payload, priority=priority, timeout_s=timeout_s, admitted=admitted
        )

    async def status(self) -> dict[str, Any]:
        return worker_status(self.worker)


def worker_status(worker: ModelWorker) -> dict[str, Any]:
    """The status document of a worker (shared by the local and Serve clients)."""
    ready = worker.state is WorkerState.READY
    return {
        "state": worker.state.value,
        "error": worker.load_error,
        "queue_depth": worker.queue_depth(),
        "stats": worker.stats.snapshot(),
        "info": worker.adapter.describe() if ready else {},
    }
