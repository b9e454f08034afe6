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
from harmonyspeech.pipelines.admission import RequestClient
from harmonyspeech.pipelines.context import PipelineContext
from harmonyspeech.pipelines.metering import SpeechMeter, input_processed, timed, timed_stream
from harmonyspeech.pipelines.ordered import cancel_all, in_order
from harmonyspeech.pipelines.spec import PipelineSpec, StageSpec
from harmonyspeech.pipelines.speech import SpeechItem
from harmonyspeech.pipelines.stages import STAGES, ItemSource, StreamingStage

logger = logging.getLogger(__name__)


class PipelineRunner:
    """Executes pipelines over a set of model clients.

    Errors: client errors (4xx), overload, deadline and model-availability errors pass through
    unchanged; any other failure becomes a ``PipelineStageError`` naming the stage. Every stage
    is bounded by the request's remaining time (504 beyond it; its queued work is cancelled).
    A full queue refuses a request's model calls only until its first output is out
    (``pipelines.admission``).
    Stage latency and the request's audio metrics are recorded (``pipelines.metering``).

    Args:
        clients: One client per model instance name.
    """

    def __init__(self, clients: Mapping[str, ModelClient]):
        self._clients = dict(clients)

    async def run(self, pipeline: PipelineSpec, ctx: PipelineContext) -> PipelineContext:
        """Run every stage of ``pipeline`` on ``ctx``."""
        if _item_source(pipeline) is not None:
            ctx.speech_items = [item async for item in self.stream(pipeline, ctx)]
            return ctx
        for spec in pipeline.stages:
            await self._run_stage(pipeline, spec, ctx)
        input_processed(pipeline, ctx)
        return ctx

    async def stream(self, pipeline: PipelineSpec, ctx: PipelineContext) -> AsyncIterator[Any]:
        """Yield the pipeline's output as it arrives.

        A pipeline with an item source (e.g. ``synthesize``) yields its items in order, each
        as soon as it and every item before it are done; otherwise all stages but the last
        run, and the last one streams.
        """
        source = _item_source(pipeline)
        if source is not None:
            async for item in self._stream_items(pipeline, ctx, source):
                yield item
            return
        *head, last = pipeline.stages
        for spec in head:
            await self._run_stage(pipeline, spec, ctx)
        stage = STAGES[last.kind]
        if not isinstance(stage, StreamingStage):
            raise InternalError(f"stage {last.kind!r} cannot stream")
        parts = stage.stream(last, ctx, self._client(last, ctx))
        with _reported(pipeline, last):
            async for part in timed_stream(pipeline, last, ctx, parts):
                yield part

    async def _stream_items(
        self, pipeline: PipelineSpec, ctx: PipelineContext, source: int
    ) -> AsyncIterator[SpeechItem]:
        for spec in pipeline.stages[:source]:
            await self._run_stage(pipeline, spec, ctx)
        item_stages = pipeline.stages[source:]
        source_spec = item_stages[0]
        with _reported(pipeline, source_spec):
            items = STAGES[source_spec.kind].items(source_spec, ctx)  # type: ignore[attr-defined]
        meter = SpeechMeter(pipeline, ctx)
        # Every item is submitted at once, so the scheduler can batch them with other requests'.
        tasks = [
            asyncio.ensure_future(self._process_item(pipeline, item_stages, ctx, item, meter))
            for item in items
        ]
        try:
            for task in tasks:
                with _reported(pipeline, source_spec):
                    item = await in_order(task, tasks, ctx.wait_s(task))
                # The first sentence is out: from now on no full queue may cut the request off.
                ctx.admitted = True
                meter.delivered(item)
                yield item
        finally:
            cancel_all(tasks)
        meter.finished()

    async def _process_item(
        self,
        pipeline: PipelineSpec,
        stages: tuple[StageSpec, ...],
        ctx: PipelineContext,
        item: SpeechItem,
        meter: SpeechMeter,
    ) -> SpeechItem:
        # A stage may ask for the item again (validation retries); the stage bounds the retries.
        while True:
            item.retry = False
            for spec in stages:
                with _reported(pipeline, spec), timed(pipeline, spec):
                    stage = STAGES[spec.kind]
                    client = self._client(spec, ctx)
                    await stage.process(spec, ctx, client, item)  # type: ignore[attr-defined]
                if item.retry:
                    break
            else:
                meter.ready(item)
                return item

    async def _run_stage(
        self, pipeline: PipelineSpec, spec: StageSpec, ctx: PipelineContext
    ) -> None:
        timeout = ctx.remaining_s()
        with _reported(pipeline, spec), timed(pipeline, spec):
            await asyncio.wait_for(
                STAGES[spec.kind].run(spec, ctx, self._client(spec, ctx)), timeout=timeout
            )

    def _client(self, spec: StageSpec, ctx: PipelineContext) -> RequestClient:
        return RequestClient(self._clients[spec.model], ctx)


def _item_source(pipeline: PipelineSpec) -> int | None:
    return next(
        (i for i, s in enumerate(pipeline.stages) if isinstance(STAGES[s.kind], ItemSource)),
        None,
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
