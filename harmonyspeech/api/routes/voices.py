"""Voices: the listings TTS clients call, and the registry of cloned voices.

``GET /v1/audio/voices`` and ``GET /v1/audio/models``: Open WebUI expects
``{"voices": [{"id", "name"}]}`` and ``{"models": [{"id"}]}``; Home Assistant integrations read
the same shapes. ``POST /v1/audio/voices`` clones a voice from reference recordings through a
pipeline ending in ``embed``; the voice's id then works as ``voice`` in ``/v1/audio/speech``
with pipelines that have a ``convert`` stage.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Response, UploadFile

from harmonyspeech.api.demo import random_weights_headers
from harmonyspeech.api.deps import get_runtime
from harmonyspeech.api.ratelimit import charge_audio_seconds
from harmonyspeech.api.uploads import AUDIO_UPLOAD_OPENAPI, read_audio
from harmonyspeech.audio import Audio
from harmonyspeech.config import LimitsConfig
from harmonyspeech.errors import (
    InternalError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    quoted,
)
from harmonyspeech.models.types import ToneColor
from harmonyspeech.pipelines.context import PipelineContext
from harmonyspeech.pipelines.runtime import EngineRuntime
from harmonyspeech.pipelines.spec import PipelineSpec
from harmonyspeech.pipelines.voices import VoiceRecord, is_voice_id

router = APIRouter()
Runtime = Annotated[EngineRuntime, Depends(get_runtime)]


@router.get("/v1/audio/voices")
async def list_voices(runtime: Runtime, model: str | None = None) -> dict[str, Any]:
    """Voices of every speech pipeline (or of ``model``): speakers and configured aliases."""
    pipelines = _speech_pipelines(runtime, model)
    voices = await builtin_voices(runtime, pipelines)
    names = {p.name for p in pipelines}
    for record in await asyncio.to_thread(runtime.voices.list):
        entry = voice_out(runtime, record)
        entry["models"] = [name for name in entry["models"] if name in names]
        if entry["models"] or model is None:
            voices.append(entry)
    return {"voices": voices}


def _speech_pipelines(runtime: EngineRuntime, model: str | None = None) -> list[PipelineSpec]:
    """The speech pipeline ``model`` names (a 404 if none), or every speech pipeline."""
    if model:
        return [runtime.catalog.resolve(model, produces="speech")]
    return [p for p in runtime.catalog if p.produces == "speech"]


async def builtin_voices(
    runtime: EngineRuntime, pipelines: list[PipelineSpec]
) -> list[dict[str, Any]]:
    """The built-in voices of ``pipelines``, each with the pipelines that have it.

    A voice name that two pipelines speak alike (same speaker and language) is one entry; one
    they speak differently (a name their synthesizers map to different speakers) is one entry
    per way, so that every entry tells the truth about the pipelines it lists.
    """
    voices: dict[tuple[Any, ...], dict[str, Any]] = {}
    for pipeline in pipelines:
        for voice in await speech_voices(runtime, pipeline.name):
            key = (voice["id"], voice["speaker"], voice["language"])
            entry = voices.setdefault(key, {**voice, "type": "builtin", "models": []})
            entry["models"].append(pipeline.name)
    return list(voices.values())


CLONE_DECODE_RATE = 22050
"""References are decoded at the OpenVoice V2 converter's rate (VAD resamples for itself)."""
REFERENCE_GAP_S = 0.5
"""Silence put between several reference files before they are embedded together."""
MAX_REFERENCE_FILES = 16
"""Most reference files one request may upload (a few recordings make a voice; many small files
are only decoding work)."""
Files = Annotated[list[UploadFile], File(description="One or more recordings of the voice.")]


# Shaped like OpenAI's custom-voice objects: {"id", "object": "voice", "name", "created_at"}.
@router.post("/v1/audio/voices", openapi_extra=AUDIO_UPLOAD_OPENAPI)
async def create_voice(
    runtime: Runtime,
    response: Response,
    file: Files,
    name: Annotated[str, Form(min_length=1, max_length=256)],
    consent: Annotated[str | None, Form(max_length=4096)] = None,
    model: Annotated[str | None, Form()] = None,
) -> dict[str, Any]:
    """Clone a voice: its tone colour from the recordings, stored under a new id."""
    pipeline = runtime.catalog.select(model, produces="tone_color")
    tone = await _tone_color(runtime, pipeline, file)
    response.headers.update(await random_weights_headers(runtime, pipeline))
    stage = pipeline.stage("embed")
    assert stage is not None  # a pipeline producing a tone colour ends in embed
    record = await asyncio.to_thread(
        runtime.voices.create,
        name=name,
        embedding=tone.embedding,
        model=stage.model,
        speech_seconds=tone.speech_seconds,
        consent=consent,
    )
    return voice_out(runtime, record)


@router.get("/v1/audio/voices/{voice_id}")
async def get_voice(runtime: Runtime, voice_id: str, model: str | None = None) -> dict[str, Any]:
    """One voice: a cloned voice's record, or a built-in voice's entry (as ``model`` speaks it;
    by default as the first speech pipeline that has it does)."""
    if is_voice_id(voice_id):
        stored = await asyncio.to_thread(runtime.voices.get, voice_id)
        return voice_out(runtime, stored.record)
    entries = await builtin_voices(runtime, _speech_pipelines(runtime, model))
    entry = next((e for e in entries if e["id"] == voice_id), None)
    if entry is None:
        raise NotFoundError(f"no voice {quoted(voice_id)}", param="voice_id")
    return entry


@router.get("/v1/audio/voices/{voice_id}/embedding")
async def get_voice_embedding(runtime: Runtime, voice_id: str) -> dict[str, Any]:
    """A cloned voice's raw tone-colour embedding (float32 values)."""
    await _refuse_builtin(runtime, voice_id, "have a tone-colour embedding")
    stored = await asyncio.to_thread(runtime.voices.get, voice_id)
    return {
        "id": voice_id,
        "object": "voice.embedding",
        "dimensions": int(stored.embedding.size),
        "embedding": stored.embedding.tolist(),
    }


@router.delete("/v1/audio/voices/{voice_id}")
async def delete_voice(runtime: Runtime, voice_id: str) -> dict[str, Any]:
    """Delete a cloned voice; requests already speaking with it finish normally."""
    await _refuse_builtin(runtime, voice_id, "can be deleted")
    await asyncio.to_thread(runtime.voices.delete, voice_id)
    return {"id": voice_id, "object": "voice.deleted", "deleted": True}


async def _refuse_builtin(runtime: EngineRuntime, voice_id: str, only_cloned: str) -> None:
    """A built-in voice exists (GET shows it), so it is not a 404 where only cloned ones fit.

    Raises:
        InvalidRequestError: ``voice_id`` names a built-in voice (400).
    """
    if is_voice_id(voice_id):
        return
    if any(e["id"] == voice_id for e in await builtin_voices(runtime, _speech_pipelines(runtime))):
        raise InvalidRequestError(
            f"{voice_id!r} is a built-in voice; only cloned voices (POST /v1/audio/voices) "
            f"{only_cloned}",
            param="voice_id",
        )


@router.post("/v1/audio/embeddings", openapi_extra=AUDIO_UPLOAD_OPENAPI)
async def create_embedding(
    runtime: Runtime, response: Response, file: Files, model: Annotated[str | None, Form()] = None
) -> dict[str, Any]:
    """The tone-colour embedding of recordings, without storing a voice (OpenAI list shape)."""
    pipeline = runtime.catalog.select(model, produces="tone_color")
    tone = await _tone_color(runtime, pipeline, file)
    response.headers.update(await random_weights_headers(runtime, pipeline))
    return {
        "object": "list",
        "model": pipeline.name,
        "data": [{"object": "embedding", "index": 0, "embedding": tone.embedding.tolist()}],
        "speech_seconds": round(tone.speech_seconds, 3),
    }


async def _tone_color(
    runtime: EngineRuntime, pipeline: PipelineSpec, files: list[UploadFile]
) -> ToneColor:
    limits = runtime.config.server.limits
    audio = await decode_references(files, limits)
    await charge_audio_seconds(audio.duration)
    ctx = PipelineContext.with_timeout(limits.audio_timeout_s(audio.duration), audio=audio)
    await runtime.runner.run(pipeline, ctx)
    if ctx.tone_color is None:
        raise InternalError(f"pipeline {pipeline.name!r} produced no tone colour")
    return ctx.tone_color


async def decode_references(files: list[UploadFile], limits: LimitsConfig) -> Audio:
    """The references decoded one after another, with a short gap between them, within the
    duration limit together: each file is decoded with only what the earlier ones left of it,
    so that small files of long silence cannot add up to more audio than one request may hold.

    Raises:
        InvalidRequestError: More than ``MAX_REFERENCE_FILES`` files, or one is not audio.
        PayloadTooLargeError: Together they hold more than ``limits.max_audio_seconds``.
    """
    if len(files) > MAX_REFERENCE_FILES:
        raise InvalidRequestError(
            f"{len(files)} reference files; at most {MAX_REFERENCE_FILES} are taken", param="file"
        )
    gap = np.zeros(int(CLONE_DECODE_RATE * REFERENCE_GAP_S), dtype=np.float32)
    parts: list[np.ndarray] = []
    seconds = 0.0
    for file in files:
        left = limits.max_audio_seconds - seconds
        try:
            clip = await read_audio(file, limits, sample_rate=CLONE_DECODE_RATE, max_seconds=left)
        except PayloadTooLargeError:
            if not parts:
                raise
            raise PayloadTooLargeError(
                f"the references hold more than {limits.max_audio_seconds:g} s of audio "
                "together, the limit",
                param="file",
            ) from None
        parts.extend([clip.samples, gap])
        seconds += clip.duration + REFERENCE_GAP_S
    return Audio(np.concatenate(parts[:-1]), CLONE_DECODE_RATE)


def voice_out(runtime: EngineRuntime, record: VoiceRecord) -> dict[str, Any]:
    """A cloned voice as the API shows it, with the speech pipelines that can speak it."""
    models = [
        p.name
        for p in runtime.catalog
        if (stage := p.stage("convert")) is not None and stage.model == record.model
    ]
    return {
        **record.to_dict(),
        "object": "voice",
        "type": "cloned",
        "created_at": record.created,
        "models": models,
    }


@router.get("/v1/audio/models")
async def list_audio_models(runtime: Runtime) -> dict[str, Any]:
    """Speech pipelines and their aliases, as ``model`` values for ``/v1/audio/speech``."""
    names = runtime.catalog.names(produces="speech")
    return {"models": [{"id": name} for name in names]}


async def speech_voices(runtime: EngineRuntime, pipeline_name: str) -> list[dict[str, Any]]:
    """The built-in voices of one speech pipeline, from its synthesizer's loaded checkpoint."""
    pipeline = runtime.catalog.resolve(pipeline_name)
    stage = pipeline.stage("synthesize")
    if stage is None:
        return []
    facts = await runtime.model_facts(stage.model)
    language = facts.get("language")
    speakers = [
        {"id": s, "name": s, "speaker": s, "language": language} for s in facts.get("speakers", [])
    ]
    aliases = [
        {"id": alias, "name": alias, "speaker": speaker, "language": language}
        for alias, speaker in facts.get("voices", {}).items()
    ]
    return speakers + aliases
