"""``POST /v1/audio/transcriptions`` and ``POST /v1/audio/translations`` (OpenAI multipart)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from harmonyspeech.api import sse
from harmonyspeech.api import transcript_formats as formats
from harmonyspeech.api.deps import get_runtime
from harmonyspeech.api.ratelimit import charge_audio_seconds
from harmonyspeech.api.streaming import started
from harmonyspeech.api.uploads import AUDIO_UPLOAD_OPENAPI, read_audio
from harmonyspeech.errors import HarmonySpeechError, InvalidRequestError
from harmonyspeech.models.types import TranscribedSegment
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
) -> Response:
    granularities = await _granularities(request, timestamp_granularities, response_format)
    options = TranscriptionOptions(
        task="transcribe",
        language=_language(language),
        prompt=prompt or None,
        temperature=temperature,
        word_timestamps="word" in granularities,
    )
    return await _respond(runtime, file, model, options, response_format, stream=stream)


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
) -> Response:
    pipeline = runtime.catalog.select(model, produces="transcript")
    limits = runtime.config.server.limits
    audio = await read_audio(file, limits, sample_rate=DECODE_RATE)
    await charge_audio_seconds(audio.duration)
    ctx = PipelineContext.with_timeout(
        limits.request_timeout_s, audio=audio, transcription=options, streamed=stream
    )
    if stream:
        events = await started(_events(runtime.runner.stream(pipeline, ctx), ctx))
        return StreamingResponse(events, media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)
    await runtime.runner.run(pipeline, ctx)
    assert ctx.transcript is not None  # the pipeline ends in a transcribe stage
    return _formatted(ctx.transcript, response_format, options)


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
    done = {"type": "transcript.text.done", "text": transcript.text}
    yield sse.sse_frame({**done, "usage": formats.usage(transcript)})


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
