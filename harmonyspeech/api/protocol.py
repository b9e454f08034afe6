"""Wire types of the HTTP API (responses; request bodies live with their routes)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class SegmentOut(BaseModel):
    start: float
    """Start of speech, seconds."""
    end: float
    """End of speech, seconds."""


class VadResponse(BaseModel):
    model: str
    """Pipeline that served the request."""
    duration: float
    """Duration of the decoded upload, seconds."""
    segments: list[SegmentOut]
    """Speech segments in order."""


class ModelCard(BaseModel):
    """One entry of ``GET /v1/models`` (OpenAI list shape plus our details)."""

    id: str
    object: str = "model"
    created: int
    owned_by: str = "harmonyspeech"
    type: str
    """``pipeline``, ``alias`` or ``model_instance``."""
    details: dict[str, Any] = Field(default_factory=dict)


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelCard]
