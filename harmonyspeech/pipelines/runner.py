"""Runs a pipeline's stages in order for one request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from harmonyspeech.engine.client import ModelClient
from harmonyspeech.errors import (
    DeadlineExceededError,
    HarmonySpeechError,
    InternalError,
    PipelineStageError,
)
from harmonyspeech.pipelines.context import PipelineContext
from harmonyspeech.pipelines.spec import PipelineSpec
from harmonyspeech.pipelines.stages import STAGES

logger = logging.getLogger(__name__)


class PipelineRunner:
    """Executes pipelines over a set of model clients.

    Args:
        clients: One client per model instance name.
    """

    def __init__(self, clients: Mapping[str, ModelClient]):
        self._clients = dict(clients)

    async def run(self, pipeline: PipelineSpec, ctx: PipelineContext) -> PipelineContext:
        """Run every stage of ``pipeline`` on ``ctx``.

        Each stage is bounded by the request's remaining time (504 beyond it; the stage's
        queued work is cancelled). Client errors (4xx), overload, deadline and
        model-availability errors pass through unchanged; any other failure is reported as
        ``PipelineStageError`` naming the stage.
        """
        for spec in pipeline.stages:
            timeout = ctx.remaining_s()
            try:
                await asyncio.wait_for(
                    STAGES[spec.kind].run(spec, ctx, self._clients[spec.model]), timeout=timeout
                )
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
        return ctx
