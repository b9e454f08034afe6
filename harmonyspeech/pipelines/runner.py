"""Runs a pipeline's stages in order for one request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from harmonyspeech.engine.client import ModelClient
from harmonyspeech.errors import (
    DeadlineExceededError,
    HarmonySpeechError,
    InternalError,
    PipelineStageError,
)
from harmonyspeech.pipelines.context import PipelineContext
from harmonyspeech.pipelines.spec import PipelineSpec, StageSpec
from harmonyspeech.pipelines.stages import STAGES, StreamingStage

logger = logging.getLogger(__name__)


class PipelineRunner:
    """Executes pipelines over a set of model clients.

    Errors: client errors (4xx), overload, deadline and model-availability errors pass through
    unchanged; any other failure becomes a ``PipelineStageError`` naming the stage. Every stage
    is bounded by the request's remaining time (504 beyond it; its queued work is cancelled).

    Args:
        clients: One client per model instance name.
    """

    def __init__(self, clients: Mapping[str, ModelClient]):
        self._clients = dict(clients)

    async def run(self, pipeline: PipelineSpec, ctx: PipelineContext) -> PipelineContext:
        """Run every stage of ``pipeline`` on ``ctx``."""
        for spec in pipeline.stages:
            await self._run_stage(pipeline, spec, ctx)
        return ctx

    async def stream(self, pipeline: PipelineSpec, ctx: PipelineContext) -> AsyncIterator[Any]:
        """Run all stages but the last, then yield the last stage's output as it arrives."""
        *head, last = pipeline.stages
        for spec in head:
            await self._run_stage(pipeline, spec, ctx)
        stage = STAGES[last.kind]
        if not isinstance(stage, StreamingStage):
            raise InternalError(f"stage {last.kind!r} cannot stream")
        with _reported(pipeline, last):
            async for part in stage.stream(last, ctx, self._clients[last.model]):
                yield part

    async def _run_stage(self, pipeline: PipelineSpec, spec: StageSpec, ctx: PipelineContext):
        timeout = ctx.remaining_s()
        with _reported(pipeline, spec):
            await asyncio.wait_for(
                STAGES[spec.kind].run(spec, ctx, self._clients[spec.model]), timeout=timeout
            )


@contextmanager
def _reported(pipeline: PipelineSpec, spec: StageSpec) -> Iterator[None]:
    try:
        yield
    except TimeoutError:
        message = f"request deadline exceeded in stage {spec.kind!r}"
        raise DeadlineExceededError(message) from None
    except InternalError as exc:
        raise PipelineStageError(exc.message, stage=spec.kind) from exc
    except HarmonySpeechError:
        raise
    except Exception as exc:
        logger.exception("stage %r of pipeline %r failed", spec.kind, pipeline.name)
        raise PipelineStageError(f"{type(exc).__name__}: {exc}", stage=spec.kind) from exc
