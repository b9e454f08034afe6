"""``POST /v1/audio/vad``: speech segments of an uploaded file."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile

from harmonyspeech.api.deps import get_runtime
from harmonyspeech.api.protocol import SegmentOut, VadResponse
from harmonyspeech.api.ratelimit import charge_audio_seconds
from harmonyspeech.api.uploads import AUDIO_UPLOAD_OPENAPI, read_audio
from harmonyspeech.models.types import vad_params
from harmonyspeech.pipelines.context import PipelineContext
from harmonyspeech.pipelines.runtime import EngineRuntime

router = APIRouter()

VAD_DECODE_RATE = 16000
"""Uploads are decoded at 16 kHz; a VAD model running at another rate resamples itself."""

Probability = Annotated[float | None, Form(gt=0, lt=1, allow_inf_nan=False)]
Millis = Annotated[int | None, Form(ge=0, le=60_000)]


@router.post("/v1/audio/vad", response_model=VadResponse, openapi_extra=AUDIO_UPLOAD_OPENAPI)
async def detect_speech(
    runtime: Annotated[EngineRuntime, Depends(get_runtime)],
    file: Annotated[UploadFile, File(description="Audio in any common format.")],
    model: Annotated[str | None, Form()] = None,
    threshold: Probability = None,
    neg_threshold: Probability = None,
    min_speech_duration_ms: Millis = None,
    min_silence_duration_ms: Millis = None,
    speech_pad_ms: Millis = None,
    max_speech_duration_s: Annotated[float | None, Form(gt=0, allow_inf_nan=False)] = None,
) -> VadResponse:
    pipeline = runtime.catalog.select(model, produces="segments")
    params = vad_params(
        threshold=threshold,
        neg_threshold=neg_threshold,
        min_speech_duration_ms=min_speech_duration_ms,
        min_silence_duration_ms=min_silence_duration_ms,
        speech_pad_ms=speech_pad_ms,
        max_speech_duration_s=max_speech_duration_s,
    )
    limits = runtime.config.server.limits
    audio = await read_audio(file, limits, sample_rate=VAD_DECODE_RATE)
    await charge_audio_seconds(audio.duration)
    ctx = PipelineContext.with_timeout(
        limits.audio_timeout_s(audio.duration), audio=audio, vad_params=params
    )
    await runtime.runner.run(pipeline, ctx)
    assert ctx.vad is not None  # the pipeline ends in a vad stage (checked by select)
    return VadResponse(
        model=pipeline.name,
        duration=ctx.vad.duration,
        segments=[SegmentOut(start=s.start, end=s.end) for s in ctx.vad.segments],
    )
