"""Stage implementations, one per stage kind.

A stage turns the context into model payloads, calls its model through a ``ModelClient`` and
stores the result in the context. Stages whose output can be consumed piece by piece also offer
``stream`` (the last stage of a pipeline may be streamed to the client). Adding a stage kind
means adding a class here and registering it in ``STAGES``; which model runs it, and in which
pipeline, is configuration.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol, runtime_checkable

from harmonyspeech.engine.client import ModelClient
from harmonyspeech.models.types import (
    TranscribedSegment,
    TranscribeWindow,
    VadParams,
    VadRequest,
    WindowTranscript,
)
from harmonyspeech.pipelines.context import PipelineContext
from harmonyspeech.pipelines.spec import StageSpec
from harmonyspeech.pipelines.transcripts import Span, Transcript, plan_windows, window_audio


class Stage(Protocol):
    """What every stage kind implements."""

    produces: str
    """What a pipeline ending in this stage returns (``segments``, ``transcript``, ...); an
    endpoint accepts the pipelines that produce what it returns."""

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Validate the stage's config options; raise ValueError naming the problem."""
        ...

    async def run(self, spec: StageSpec, ctx: PipelineContext, client: ModelClient) -> None:
        """Run the stage for one request, updating ``ctx``."""
        ...


@runtime_checkable
class StreamingStage(Protocol):
    """A stage whose output can be consumed piece by piece."""

    def stream(
        self, spec: StageSpec, ctx: PipelineContext, client: ModelClient
    ) -> AsyncIterator[Any]:
        """Yield the output in order as it becomes available, updating ``ctx`` as ``run``."""
        ...


class VadStage:
    """Speech segments of the input audio.

    Options (all optional) are VAD parameters that this stage uses instead of the model's
    defaults, e.g. for pre-segmenting audio before transcription; a request's own VAD parameters
    still win.
    """

    produces = "segments"

    def check_options(self, options: Mapping[str, Any]) -> None:
        VadParams(**options)  # raises a ValueError naming each bad option

    async def run(self, spec: StageSpec, ctx: PipelineContext, client: ModelClient) -> None:
        audio = ctx.require_audio()
        request = VadRequest(audio.samples, audio.sample_rate, _vad_params(spec, ctx))
        ctx.vad = await client.infer(request, priority=ctx.priority, timeout_s=ctx.remaining_s())


def _vad_params(spec: StageSpec, ctx: PipelineContext) -> VadParams:
    overrides = {k: v for k, v in vars(ctx.vad_params).items() if v is not None}
    return dataclasses.replace(VadParams(**spec.options), **overrides)


class TranscribeStage:
    """Speech to text in windows of at most 30 s, batched with other requests' windows.

    With a preceding ``vad`` stage, windows cover only speech. Without a language, the first
    window detects it and the others use it, so a transcript has one language.
    """

    produces = "transcript"

    def check_options(self, options: Mapping[str, Any]) -> None:
        if options:
            raise ValueError(f"takes no options, got {', '.join(sorted(options))}")

    async def run(self, spec: StageSpec, ctx: PipelineContext, client: ModelClient) -> None:
        async for _ in self.stream(spec, ctx, client):
            pass

    async def stream(
        self, spec: StageSpec, ctx: PipelineContext, client: ModelClient
    ) -> AsyncIterator[TranscribedSegment]:
        audio = ctx.require_audio()
        language = ctx.transcription.language
        transcript = Transcript(language=language or "en", duration=audio.duration)
        ctx.transcript = transcript
        spans = plan_windows(audio.duration, ctx.vad.segments if ctx.vad else None)
        pending: list[asyncio.Future[WindowTranscript]] = []

        def submit(index: int, span: Span, lang: str | None) -> asyncio.Future[WindowTranscript]:
            window = TranscribeWindow(
                audio=window_audio(audio, span),
                offset=span.start,
                task=ctx.transcription.task,
                language=lang,
                prompt=ctx.transcription.prompt if index == 0 else None,
                temperature=ctx.transcription.temperature,
                word_timestamps=ctx.transcription.word_timestamps,
            )
            future = asyncio.ensure_future(
                client.infer(window, priority=ctx.item_priority(index), timeout_s=ctx.remaining_s())
            )
            pending.append(future)
            return future

        try:
            for index, span in enumerate(spans):
                future = submit(index, span, language)
                if language is None:
                    # The first window settles the language before the others are sent.
                    first = await asyncio.wait_for(future, ctx.remaining_s())
                    language = transcript.language = first.language
            for future in pending:
                window = await asyncio.wait_for(future, ctx.remaining_s())
                for segment in transcript.extend(window):
                    yield segment
        finally:
            for future in pending:
                future.cancel()


STAGES: dict[str, Stage] = {
    "vad": VadStage(),
    "transcribe": TranscribeStage(),
}
