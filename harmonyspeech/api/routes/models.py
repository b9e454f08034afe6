"""``GET /v1/models``: pipelines (what clients pass as ``model``), aliases and model instances."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from harmonyspeech.api.deps import get_runtime
from harmonyspeech.api.protocol import ModelCard, ModelList
from harmonyspeech.api.routes.voices import speech_voices
from harmonyspeech.errors import NotFoundError
from harmonyspeech.pipelines.runtime import EngineRuntime

router = APIRouter()
Runtime = Annotated[EngineRuntime, Depends(get_runtime)]
INSTANCE_PREFIX = "instance:"


@router.get("/v1/models", response_model=ModelList)
async def list_models(request: Request, runtime: Runtime) -> ModelList:
    return ModelList(data=await _cards(runtime, request.app.state.started_at))


@router.get("/v1/models/{model_id:path}", response_model=ModelCard)
async def get_model(model_id: str, request: Request, runtime: Runtime) -> ModelCard:
    for card in await _cards(runtime, request.app.state.started_at):
        if card.id == model_id:
            return card
    raise NotFoundError(f"model {model_id!r} does not exist", param="model", code="model_not_found")


async def _cards(runtime: EngineRuntime, created: int) -> list[ModelCard]:
    statuses = await runtime.model_statuses()
    families = {m.name: m.family for m in runtime.config.models}
    cards: list[ModelCard] = []
    for pipeline in runtime.catalog:
        stages = [
            {"kind": s.kind, "model": s.model, "state": statuses[s.model]["state"]}
            for s in pipeline.stages
        ]
        details: dict[str, Any] = {
            "description": pipeline.description,
            "aliases": list(pipeline.aliases),
            "produces": pipeline.produces,
            "stages": stages,
        }
        if pipeline.produces == "speech":
            details["voices"] = [v["id"] for v in await speech_voices(runtime, pipeline.name)]
        cards.append(ModelCard(id=pipeline.name, created=created, type="pipeline", details=details))
        cards += [
            ModelCard(id=a, created=created, type="alias", details={"alias_of": pipeline.name})
            for a in pipeline.aliases
        ]
    for name, status in statuses.items():
        details = {"name": name, "family": families[name], **status}
        cards.append(
            ModelCard(
                id=INSTANCE_PREFIX + name, created=created, type="model_instance", details=details
            )
        )
    return cards
