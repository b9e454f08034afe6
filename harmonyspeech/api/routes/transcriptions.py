"""``POST /v1/audio/transcriptions`` and ``POST /v1/audio/translations`` (OpenAI multipart)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import ValidationError

from harmonyspeech.api import sse
from harmonyspeech.api import transcript_formats as formats
from harmonyspeech.api.demo import random_weights_headers
from harmonyspeech.api.deps import get_runtime
from harmonyspeech.api.ratelimit import charge_audio_seconds
from harmonyspeech.api.streaming import started
from harmonyspeech.api.uploads import AUDIO_UPLOAD_OPENAPI, read_audio
from harmonyspeech.errors import HarmonySpeechError, InvalidRequestError
from harmonyspeech.models.types import TranscribedSegment, VadParams
from harmonyspeech.pipelines.context import PipelineContext
from harmonyspeech.pipelines.runtime import EngineRuntime
from harmonyspeech.pipelines.transcripts import Transcript, TranscriptionOptions

router = APIRouter()

DECODE_RATE = 16000
Runtime = Annotated[EngineRuntime, Depends(get_runtime)]
AudioFile = Annotated[UploadFile, File(description="Audio in any common format.")]
ResponseFormat = Annotated[Literal["json", "text", "srt", "verbose_json", "vtt"], Form()]
Temperature = Annotated[float, Form(ge=0, le=1, allow_inf_nan=False)]
Granularities = Annotated[
    list[str] | None,
    Form(
        alias="timestamp_granularities[]",
        description="'word' and/or 'segment' (with verbose_json); repeated fields, as the OpenAI "
        "SDK sends them ('timestamp_granularities' is read too).",
    ),
]
Chunking = Annotated[
    str | None,
    Form(
        description="'auto' (the pipeline's VAD settings) or a server_vad object as JSON; the "
        "OpenAI SDK sends the object as 'chunking_strategy[type]', ... fields, read too.",
    ),
]
CHUNKING_TO_VAD = {
    "threshold": "threshold",
    "silence_duration_ms": "min_silence_duration_ms",
    "prefix_padding_ms": "speech_pad_ms",
}
"""OpenAI's ``server_vad`` settings and the VAD parameters they set."""


# https://platform.openai.com/docs/api-reference/audio/createTranscription
@router.post("/v1/audio/transcriptions", response_model=None, openapi_extra=AUDIO_UPLOAD_OPENAPI)
async def create_transcription(
    request: Request,
    runtime: Runtime,
    file: AudioFile,
    model: Annotated[str | None, Form()] = None,
    language: Annotated[str | None, Form()] = None,
    prompt: Annotated[str | None, Form()] = None,
    response_format: ResponseFormat = "json",
    temperature: Temperature = 0.0,
    stream: Annotated[bool, Form()] = False,
    timestamp_granularities: Granularities = None,
    chunking_strategy: Chunking = None,
) -> Response:
    granularities = await _granularities(request, timestamp_granularities, response_format)
    options = TranscriptionOptions(
        task="transcribe",
        language=_language(language),
        prompt=prompt or None,
        temperature=temperature,
        word_timestamps="word" in granularities,
    )
    vad = await _chunking(request, chunking_strategy)
    return await _respond(runtime, file, model, options, response_format, stream=stream, vad=vad)


# https://platform.openai.com/docs/api-reference/audio/createTranslation
@router.post("/v1/audio/translations", response_model=None, openapi_extra=AUDIO_UPLOAD_OPENAPI)
async def create_translation(
    runtime: Runtime,
    file: AudioFile,
    model: Annotated[str | None, Form()] = None,
    prompt: Annotated[str | None, Form()] = None,
    response_format: ResponseFormat = "json",
    temperature: Temperature = 0.0,
) -> Response:
    options = TranscriptionOptions(task="translate", prompt=prompt or None, temperature=temperature)
    return await _respond(runtime, file, model, options, response_format, stream=False)


async def _granularities(
    request: Request, declared: list[str] | None, response_format: str
) -> set[str]:
    # The OpenAI SDK sends arrays as repeated "timestamp_granularities[]" fields (``declared``).
    form = await request.form()
    values = [*(declared or []), *form.getlist("timestamp_granularities")]
    chosen = {str(v) for v in values}
    if chosen - {"word", "segment"}:
        raise InvalidRequestError(
            "timestamp_granularities must be 'word' and/or 'segment'",
            param="timestamp_granularities",
        )
    if chosen and response_format != "verbose_json":
        raise InvalidRequestError(
            "timestamp_granularities requires response_format=verbose_json",
            param="timestamp_granularities",
        )
    return chosen


async def _chunking(request: Request, declared: str | None) -> VadParams | None:
    """The VAD parameters of OpenAI's ``chunking_strategy``; None for ``auto`` or none sent.

    ``server_vad`` sets the VAD stage's speech threshold, the silence that ends a segment
    (``silence_duration_ms``) and the audio kept around speech (``prefix_padding_ms``).
    """
    form = await request.form()
    fields: Any = {
        key.removeprefix("chunking_strategy[").removesuffix("]"): str(value)
        for key, value in form.multi_items()
        if key.startswith("chunking_strategy[") and key.endswith("]")
    }
    if not fields:
        text = (declared or "").strip()
        if text in ("", "auto"):
            return None
        try:
            fields = json.loads(text)
        except json.JSONDecodeError:
            fields = None  # refused below, as any other value that is not a server_vad object
    if not isinstance(fields, dict) or fields.pop("type", None) != "server_vad":
        raise InvalidRequestError(
            "chunking_strategy must be 'auto' or an object of type 'server_vad'",
            param="chunking_strategy",
        )
    unknown = sorted(set(fields) - set(CHUNKING_TO_VAD))
    if unknown:
        raise InvalidRequestError(
            f"chunking_strategy takes {', '.join(CHUNKING_TO_VAD)}; got {', '.join(unknown)}",
            param="chunking_strategy",
        )
    try:
        return VadParams(**{CHUNKING_TO_VAD[name]: value for name, value in fields.items()})
    except ValidationError as exc:
        problems = "; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in exc.errors())
        raise InvalidRequestError(
            f"invalid chunking_strategy ({problems})", param="chunking_strategy"
        ) from None


def _language(language: str | None) -> str | None:
    if not language:
        return None
    code = language.strip().lower()
    if code not in formats.LANGUAGE_NAMES:
        raise InvalidRequestError(
            f"unsupported language {language!r}; use an ISO-639-1 code such as 'en'",
            param="language",
        )
    return code


async def _respond(
    runtime: EngineRuntime,
    file: UploadFile,
    model: str | None,
    options: TranscriptionOptions,
    response_format: str,
    *,
    stream: bool,
    vad: VadParams | None = None,
) -> Response:
    pipeline = runtime.catalog.select(model, produces="transcript")
    if vad is not None and "vad" not in pipeline.kinds:
        raise InvalidRequestError(
            f"pipeline {pipeline.name!r} has no VAD stage for chunking_strategy to configure",
            param="chunking_strategy",
        )
    limits = runtime.config.server.limits
    audio = await read_audio(file, limits, sample_rate=DECODE_RATE)
    await charge_audio_seconds(audio.duration)
    ctx = PipelineContext.with_timeout(
        limits.audio_timeout_s(audio.duration),
        audio=audio,
        transcription=options,
        streamed=stream,
        vad_params=vad or VadParams(),
    )
    headers = await random_weights_headers(runtime, pipeline, ctx)
    if stream:
        events = await started(_events(runtime.runner.stream(pipeline, ctx), ctx))
        return StreamingResponse(
            events, media_type=sse.MEDIA_TYPE, headers={**sse.HEADERS, **headers}
        )
    await runtime.runner.run(pipeline, ctx)
    assert ctx.transcript is not None  # the pipeline ends in a transcribe stage
    response = _formatted(ctx.transcript, response_format, options)
    response.headers.update(headers)
    return response


async def _events(
    segments: AsyncIterator[TranscribedSegment], ctx: PipelineContext
) -> AsyncIterator[bytes]:
    emitted = False
    try:
        async for segment in segments:
            emitted = True
            yield sse.sse_frame({"type": "transcript.text.delta", "delta": segment.text})
    except HarmonySpeechError as exc:
        if not emitted:
            raise  # nothing sent yet: answer with a proper HTTP error instead
        yield sse.sse_error(exc)
        return
    transcript = ctx.transcript
    assert transcript is not None
    # No usage here: in this event OpenAI's usage counts tokens, and duration usage (what a
    # Whisper transcription bills) is only defined for the response sent whole.
    yield sse.sse_frame({"type": "transcript.text.done", "text": transcript.text})


def _formatted(
    transcript: Transcript, response_format: str, options: TranscriptionOptions
) -> Response:
    if response_format == "text":
        return PlainTextResponse(transcript.text)
    if response_format == "srt":
        return PlainTextResponse(formats.as_srt(transcript))
    if response_format == "vtt":
        return PlainTextResponse(formats.as_vtt(transcript))
    if response_format == "verbose_json":
        body = formats.as_verbose_json(transcript, task=options.task, words=options.word_timestamps)
        return JSONResponse(body)
    return JSONResponse(formats.as_json(transcript))
