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

from pydantic import BaseModel, ConfigDict, Field

from harmonyspeech.audio import Audio, resample
from harmonyspeech.engine.client import ModelClient
from harmonyspeech.errors import InternalError
from harmonyspeech.models.types import (
    ConversionRequest,
    ToneColorRequest,
    TranscribedSegment,
    TranscribeWindow,
    VadParams,
    VadRequest,
    WindowTranscript,
    vad_params,
)
from harmonyspeech.pipelines.cloning import ConvertOptions, speech_only
from harmonyspeech.pipelines.context import PipelineContext
from harmonyspeech.pipelines.ordered import cancel_all, in_order
from harmonyspeech.pipelines.spec import StageSpec
from harmonyspeech.pipelines.speech import SpeechItem, pause, with_gap
from harmonyspeech.pipelines.transcripts import (
    SAMPLE_RATE,
    Transcript,
    plan_windows,
    window_audio,
)
from harmonyspeech.pipelines.validation import (
    ValidationOptions,
    retry_seed,
    score_transcript,
    should_retry,
)
from harmonyspeech.text.sentences import item_seed


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


def stage_applies(kind: str, ctx: PipelineContext) -> bool:
    """Whether a request uses its pipeline's ``kind`` stage: a stage that only some requests
    need (``convert``: cloned voices) says so with an ``applies(ctx)`` method."""
    applies = getattr(STAGES[kind], "applies", None)
    return applies is None or bool(applies(ctx))


@runtime_checkable
class ItemSource(Protocol):
    """A stage that cuts a request into items, each scheduled and processed on its own."""

    def items(self, spec: StageSpec, ctx: PipelineContext) -> list[SpeechItem]:
        """The request's items, in order."""
        ...

    async def process(
        self, spec: StageSpec, ctx: PipelineContext, client: ModelClient, item: SpeechItem
    ) -> None:
        """Run this stage for one item."""
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

    def model_problems(self, options: Mapping[str, Any], model: Any) -> list[str]:
        """The options over the model's own: a ``neg_threshold`` above the threshold would
        make every request a 400 naming a field its client never sent."""
        from harmonyspeech.models.silero_vad import effective_options

        merged = effective_options(model.options, VadParams(**options))
        if merged.neg_threshold is not None and merged.neg_threshold > merged.threshold:
            return [
                f"neg_threshold ({merged.neg_threshold}) is above the threshold "
                f"({merged.threshold}) once applied over model {model.name!r}'s options"
            ]
        return []

    async def run(self, spec: StageSpec, ctx: PipelineContext, client: ModelClient) -> None:
        audio = ctx.require_audio()
        request = VadRequest(audio.samples, audio.sample_rate, _vad_params(spec, ctx))
        ctx.vad = await client.infer(request, priority=ctx.priority, timeout_s=ctx.remaining_s())


def _vad_params(spec: StageSpec, ctx: PipelineContext) -> VadParams:
    """The stage's options with the request's over them.

    Raises:
        InvalidRequestError: The request's ``neg_threshold`` is above the stage's threshold.
    """
    return vad_params(**{**spec.options, **ctx.vad_params.overrides()})


class TranscribeOptions(BaseModel):
    """Options of a ``transcribe`` stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    windows_in_flight: int = Field(32, ge=1, strict=True)
    """Most windows of one request queued or running at a time (and never more than the
    model's ``batching.max_queue``); the next is sent as the earliest comes back. A long
    recording (an hour is over 120 windows) then neither fills the model's queue by itself
    nor is refused for being larger than it."""


class TranscribeStage:
    """Speech to text in windows of at most 30 s, batched with other requests' windows.

    With a preceding ``vad`` stage, windows cover only speech. Without a language, the first
    window detects it and the others use it, so a transcript has one language. Segments come
    out in order; any window's failure fails the request at once, before a stream starts if
    it can. Once the first window is transcribed, a full queue no longer refuses the
    request's later windows (``pipelines.admission``).
    """

    produces = "transcript"

    def check_options(self, options: Mapping[str, Any]) -> None:
        TranscribeOptions(**options)  # raises a ValidationError naming each bad option

    async def run(self, spec: StageSpec, ctx: PipelineContext, client: ModelClient) -> None:
        async for _ in self.stream(spec, ctx, client):
            pass

    async def stream(
        self, spec: StageSpec, ctx: PipelineContext, client: ModelClient
    ) -> AsyncIterator[TranscribedSegment]:
        in_flight = TranscribeOptions(**spec.options).windows_in_flight
        if spec.model_config is not None:
            in_flight = min(in_flight, spec.model_config.batching.max_queue)
        audio = ctx.require_audio()
        language = ctx.transcription.language
        transcript = Transcript(language=language or "en", duration=audio.duration)
        ctx.transcript = transcript
        spans = plan_windows(audio.duration, ctx.vad.segments if ctx.vad else None)
        pending: list[asyncio.Future[WindowTranscript]] = []

        def submit(index: int, lang: str | None) -> None:
            window = TranscribeWindow(
                audio=window_audio(audio, spans[index]),
                offset=spans[index].start,
                task=ctx.transcription.task,
                language=lang,
                prompt=ctx.transcription.prompt if index == 0 else None,
                temperature=ctx.transcription.temperature,
                word_timestamps=ctx.transcription.word_timestamps,
            )
            call = client.infer(
                window, priority=ctx.item_priority(index), timeout_s=ctx.remaining_s()
            )
            pending.append(asyncio.ensure_future(call))

        sent = 0
        try:
            if language is None and spans:
                # The first window settles the language before the others are sent.
                submit(0, None)
                sent = 1
                first = await asyncio.wait_for(pending[0], ctx.remaining_s())
                language = transcript.language = first.language
                ctx.admitted = True
            while pending or sent < len(spans):
                while sent < len(spans) and len(pending) < in_flight:
                    submit(sent, language)
                    sent += 1
                window = await in_order(pending[0], pending, ctx.wait_s(pending[0]))
                pending.pop(0)
                # A window is done: refusing a later one now would throw its work away.
                ctx.admitted = True
                for segment in transcript.extend(window):
                    yield segment
        finally:
            cancel_all(pending)


class SynthesizeStage:
    """Text to speech, one sentence item at a time (each one a scheduler work item).

    The first sentence of a streamed interactive request is scheduled ahead of everything
    else, as it decides the time to first audio. Each piece is followed by 50 ms / speed of
    silence. An input of punctuation alone ("...") is that silence, not an error: clients that
    speak text as it arrives send such paragraphs on their own.
    """

    produces = "speech"

    def check_options(self, options: Mapping[str, Any]) -> None:
        if options:
            raise ValueError(f"takes no options, got {', '.join(sorted(options))}")

    def items(self, spec: StageSpec, ctx: PipelineContext) -> list[SpeechItem]:
        from harmonyspeech.text import split_sentences_latin

        speech = ctx.require_speech()
        sentences = split_sentences_latin(speech.text)
        if not sentences:
            return [SpeechItem(index=0, text="", seed=speech.seed)]
        return [
            SpeechItem(index=i, text=text, seed=item_seed(speech.seed, i))
            for i, text in enumerate(sentences)
        ]

    async def process(
        self, spec: StageSpec, ctx: PipelineContext, client: ModelClient, item: SpeechItem
    ) -> None:
        speech = ctx.require_speech()
        if item.is_pause:
            item.audio = pause(speech.speed)
            return
        request = dataclasses.replace(speech, text=item.text, seed=item.seed)
        audio = await client.infer(
            request, priority=ctx.item_priority(item.index), timeout_s=ctx.remaining_s()
        )
        item.silent = audio.samples.size == 0  # nothing to speak: the gap alone
        item.audio = with_gap(audio, speech.speed)
        item.attempts += 1

    async def run(self, spec: StageSpec, ctx: PipelineContext, client: ModelClient) -> None:
        raise InternalError("the synthesize stage runs per item, through the runner")


class ValidateStage:
    """Whisper checks each synthesised sentence; a bad one is synthesised again, best kept.

    An item stage: it runs on every sentence after ``synthesize``. The sentence's score (WER or
    CER, see ``harmonyspeech.pipelines.validation``) is kept on the item; while it is above the
    threshold and retries remain, the item asks the runner to synthesise it again with a new
    seed. After the last attempt the item carries the best-scoring audio.
    """

    produces = "speech"
    needs_item_source = True

    def check_options(self, options: Mapping[str, Any]) -> None:
        ValidationOptions(**options)  # raises a ValidationError naming each bad option

    async def process(
        self, spec: StageSpec, ctx: PipelineContext, client: ModelClient, item: SpeechItem
    ) -> None:
        if item.audio is None:
            raise InternalError("validate ran before the sentence was synthesised")
        if item.is_pause:
            return
        options = ValidationOptions(**spec.options)
        text = await self._transcribe(item.audio, options.language, ctx, client, item.index)
        score = score_transcript(item.text, text, options.language)
        if item.score is None or score.rate < item.score.rate:
            item.score, item.best_audio = score, item.audio
        if should_retry(score, item.attempts, options):
            item.retry, item.seed = True, retry_seed(item.seed, item.attempts)
            return
        item.audio = item.best_audio

    async def _transcribe(
        self, audio: Audio, language: str, ctx: PipelineContext, client: ModelClient, index: int
    ) -> str:
        samples = resample(audio.samples, audio.sample_rate, SAMPLE_RATE)
        speech = Audio(samples, SAMPLE_RATE)
        windows = [
            TranscribeWindow(audio=window_audio(speech, span), offset=span.start, language=language)
            for span in plan_windows(speech.duration, None)
        ]
        results: list[WindowTranscript] = await asyncio.gather(
            *(
                client.infer(w, priority=ctx.item_priority(index), timeout_s=ctx.remaining_s())
                for w in windows
            )
        )
        return " ".join(seg.text.strip() for r in results for seg in r.segments)

    async def run(self, spec: StageSpec, ctx: PipelineContext, client: ModelClient) -> None:
        raise InternalError("the validate stage runs per item, through the runner")


class EmbedStage:
    """The tone colour of a voice from reference audio (cloning).

    With a ``vad`` stage before it, only the speech it found is used, joined; the model rejects
    a reference with too little speech, saying how much it found and needs.
    """

    produces = "tone_color"

    def check_options(self, options: Mapping[str, Any]) -> None:
        if options:
            raise ValueError(f"takes no options, got {', '.join(sorted(options))}")

    async def run(self, spec: StageSpec, ctx: PipelineContext, client: ModelClient) -> None:
        speech = speech_only(ctx.require_audio(), ctx.vad)
        ctx.tone_color = await client.infer(
            ToneColorRequest(speech), priority=ctx.priority, timeout_s=ctx.remaining_s()
        )


class ConvertStage:
    """Each synthesised sentence re-voiced to the request's cloned voice (an item stage).

    Cloned voices are synthesised with the stage's ``base_speaker`` and converted from its tone
    colour to the voice's; requests for built-in voices pass through unchanged.
    """

    produces = "speech"
    needs_item_source = True

    def check_options(self, options: Mapping[str, Any]) -> None:
        ConvertOptions(**options)  # raises a ValidationError naming each bad option

    def model_problems(self, options: Mapping[str, Any], model: Any) -> list[str]:
        """The base speaker must be one whose tone colour the converter loads, or every
        cloned-voice request would be a 400."""
        base = ConvertOptions(**options).base_speaker
        loaded = model.options.base_speakers
        if base not in loaded:
            return [
                f"base_speaker {base!r} is not in options.base_speakers of model "
                f"{model.name!r} ({', '.join(loaded)})"
            ]
        return []

    def applies(self, ctx: PipelineContext) -> bool:
        """Whether the request uses this stage at all: only cloned voices are converted."""
        return ctx.target_voice is not None

    async def process(
        self, spec: StageSpec, ctx: PipelineContext, client: ModelClient, item: SpeechItem
    ) -> None:
        if not self.applies(ctx) or item.is_pause:
            return
        if item.audio is None:
            raise InternalError("convert ran before the sentence was synthesised")
        options = ConvertOptions(**spec.options)
        request = ConversionRequest(
            item.audio, options.base_speaker, ctx.target_voice, tau=options.tau, seed=item.seed
        )
        item.audio = await client.infer(
            request, priority=ctx.item_priority(item.index), timeout_s=ctx.remaining_s()
        )

    async def run(self, spec: StageSpec, ctx: PipelineContext, client: ModelClient) -> None:
        raise InternalError("the convert stage runs per item, through the runner")


STAGES: dict[str, Stage] = {
    "vad": VadStage(),
    "transcribe": TranscribeStage(),
    "synthesize": SynthesizeStage(),
    "validate": ValidateStage(),
    "embed": EmbedStage(),
    "convert": ConvertStage(),
}
