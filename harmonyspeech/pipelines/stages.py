"""Stage implementations, one per stage kind.

A stage turns the context into a model payload, calls its model through a ``ModelClient`` and
stores the result in the context. Adding a stage kind means adding a class here and registering
it in ``STAGES``; which model runs it, and in which pipeline, is configuration.
"""

from __future__ import annotations

from typing import Protocol

from harmonyspeech.engine.client import ModelClient
from harmonyspeech.models.types import VadRequest
from harmonyspeech.pipelines.context import PipelineContext
from harmonyspeech.pipelines.spec import StageSpec


class Stage(Protocol):
    """What every stage kind implements."""

    async def run(self, spec: StageSpec, ctx: PipelineContext, client: ModelClient) -> None:
        """Run the stage for one request, updating ``ctx``."""
        ...


class VadStage:
    """Speech segments of the input audio."""

    async def run(self, spec: StageSpec, ctx: PipelineContext, client: ModelClient) -> None:
        audio = ctx.require_audio()
        request = VadRequest(audio.samples, audio.sample_rate, ctx.vad_params)
        ctx.vad = await client.infer(request, priority=ctx.priority, timeout_s=ctx.remaining_s())


STAGES: dict[str, Stage] = {
    "vad": VadStage(),
}
