"""Which of a request's model calls a full queue may refuse: those before its first output.

A model's queue bound (``batching.max_queue``) is admission control: a request that would
overfill a queue gets 503 and ``Retry-After`` before any of its output was sent, and its client
backs off. Once the first output is out (a streamed response has started, or the first
sentence of one sent whole is done), refusing a later call would cut the stream off, or throw
away what was computed: a cloned voice's later sentence at a busy converter, a validated
sentence at a Whisper busy with transcriptions. Those calls are queued past the bound instead.
They still count towards it, so that new requests are refused until the queue is back under it,
and the request's deadline still bounds their wait.
"""

from __future__ import annotations

from typing import Any

from harmonyspeech.engine.client import ModelClient
from harmonyspeech.engine.items import Priority
from harmonyspeech.pipelines.context import PipelineContext


class RequestClient:
    """A ``ModelClient`` for one request's stages: its calls are admitted past a full queue
    once ``ctx.admitted`` (the runner sets it when the first output is out).

    Args:
        client: The model's client, shared by every request.
        ctx: The request.
    """

    def __init__(self, client: ModelClient, ctx: PipelineContext):
        self._client = client
        self._ctx = ctx

    async def infer(
        self,
        payload: Any,
        *,
        priority: Priority,
        timeout_s: float | None,
        admitted: bool = False,
    ) -> Any:
        return await self._client.infer(
            payload,
            priority=priority,
            timeout_s=timeout_s,
            admitted=admitted or self._ctx.admitted,
        )

    async def status(self) -> dict[str, Any]:
        return await self._client.status()
