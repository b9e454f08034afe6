"""``GET /v1/audio/voices`` and ``GET /v1/audio/models``, the listings TTS clients call.

Open WebUI expects ``{"voices": [{"id", "name"}]}`` and ``{"models": [{"id"}]}``; Home Assistant
integrations read the same shapes.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from harmonyspeech.api.deps import get_runtime
from harmonyspeech.pipelines.runtime import EngineRuntime

router = APIRouter()
Runtime = Annotated[EngineRuntime, Depends(get_runtime)]


@router.get("/v1/audio/voices")
async def list_voices(runtime: Runtime, model: str | None = None) -> dict[str, Any]:
    """Voices of every speech pipeline (or of ``model``): speakers and configured aliases."""
    pipelines = (
        [runtime.catalog.resolve(model, produces="speech")]
        if model
        else [p for p in runtime.catalog if p.produces == "speech"]
    )
    voices: dict[str, dict[str, Any]] = {}
    for pipeline in pipelines:
        for voice in await speech_voices(runtime, pipeline.name):
            entry = voices.setdefault(voice["id"], {**voice, "models": []})
            entry["models"].append(pipeline.name)
    return {"voices": list(voices.values())}


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
