"""Request-level metrics of the pipeline runner (``harmonyspeech.telemetry.catalog``).

Stage latency, per run of a stage; for speech, the time to first audio, the audio seconds handed
out and the real-time factor; for uploads, the audio seconds processed and their real-time
factor. Times are measured from ``PipelineContext.started``; the real-time factors and the
latency of a streaming stage count the time work took, not the time a slow reader of a stream
kept it waiting.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import TypeVar

from harmonyspeech.pipelines.context import PipelineContext
from harmonyspeech.pipelines.spec import PipelineSpec, StageSpec
from harmonyspeech.pipelines.speech import SpeechItem
from harmonyspeech.telemetry import catalog as metrics

T = TypeVar("T")


@contextmanager
def timed(pipeline: PipelineSpec, spec: StageSpec) -> Iterator[None]:
    """Record the stage latency of the enclosed run, if it succeeds."""
    started = time.perf_counter()
    yield
    seconds = time.perf_counter() - started
    metrics.STAGE_LATENCY.record(seconds, pipeline=pipeline.name, stage=spec.kind)


async def timed_stream(
    pipeline: PipelineSpec, spec: StageSpec, ctx: PipelineContext, parts: AsyncIterator[T]
) -> AsyncIterator[T]:
    """Pass a streaming stage's parts through, recording its latency and, at the end, the
    upload's real-time factor, from the time spent producing the parts: the time the consumer
    takes between parts (a slow client reading a stream) does not count."""
    waited = time.monotonic() - ctx.started
    busy = 0.0
    mark = time.perf_counter()
    async for part in parts:
        busy += time.perf_counter() - mark
        yield part
        mark = time.perf_counter()
    busy += time.perf_counter() - mark
    metrics.STAGE_LATENCY.record(busy, pipeline=pipeline.name, stage=spec.kind)
    input_processed(pipeline, ctx, elapsed_s=waited + busy)


class SpeechMeter:
    """Time to first audio, audio seconds and real-time factor of one speech request."""

    def __init__(self, pipeline: PipelineSpec, ctx: PipelineContext):
        self._pipeline = pipeline.name
        self._ctx = ctx
        self._last_ready: float | None = None
        self._seconds = 0.0

    def ready(self, item: SpeechItem) -> None:
        """``item`` went through all its stages: its audio is final."""
        now = time.monotonic()
        self._last_ready = now
        if item.index == 0:
            metrics.TIME_TO_FIRST_AUDIO.record(
                now - self._ctx.started,
                pipeline=self._pipeline,
                priority=self._ctx.priority.name.lower(),
            )

    def delivered(self, item: SpeechItem) -> None:
        """``item`` was handed to the consumer (the HTTP response or a batch job)."""
        seconds = item.audio.duration if item.audio is not None else 0.0
        self._seconds += seconds
        metrics.AUDIO_OUTPUT_SECONDS.record(seconds, pipeline=self._pipeline)

    def finished(self) -> None:
        """Every item was delivered: record the request's real-time factor."""
        if self._last_ready is None or self._seconds <= 0:
            return
        rtf = (self._last_ready - self._ctx.started) / self._seconds
        metrics.REAL_TIME_FACTOR.record(rtf, pipeline=self._pipeline, audio="output")


def input_processed(
    pipeline: PipelineSpec, ctx: PipelineContext, *, elapsed_s: float | None = None
) -> None:
    """A pipeline over uploaded audio finished: record its seconds and real-time factor.

    Args:
        elapsed_s: Processing time of the request; None: the time since it started.
    """
    if ctx.audio is None:
        return
    seconds = ctx.audio.duration
    metrics.AUDIO_INPUT_SECONDS.record(seconds, pipeline=pipeline.name)
    if seconds > 0:
        if elapsed_s is None:
            elapsed_s = time.monotonic() - ctx.started
        rtf = elapsed_s / seconds
        metrics.REAL_TIME_FACTOR.record(rtf, pipeline=pipeline.name, audio="input")
