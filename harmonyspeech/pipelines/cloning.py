"""Voice cloning in pipelines: what the ``embed`` and ``convert`` stages need, and how a speech
request for a cloned voice is set up."""

from __future__ import annotations

import dataclasses

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from harmonyspeech.audio import Audio
from harmonyspeech.errors import InvalidRequestError
from harmonyspeech.models.types import VadResult
from harmonyspeech.pipelines.context import PipelineContext
from harmonyspeech.pipelines.spec import PipelineCatalog, PipelineSpec


class ConvertOptions(BaseModel):
    """Options of a ``convert`` stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_speaker: str = "EN-US"
    """MeloTTS speaker that cloned voices are synthesised with, and converted from (the
    converter needs its tone colour: ``options.base_speakers`` of the model)."""
    tau: float | None = Field(None, gt=0, le=1)
    """Posterior noise scale; None: the model's."""


def speech_only(audio: Audio, vad: VadResult | None) -> Audio:
    """The speech of ``audio`` joined (all of it without a VAD result)."""
    if vad is None:
        return audio
    rate = audio.sample_rate
    pieces = [audio.samples[int(s.start * rate) : int(s.end * rate)] for s in vad.segments]
    samples = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return Audio(samples, rate)


def use_cloned_voice(
    pipeline: PipelineSpec,
    ctx: PipelineContext,
    embedding: np.ndarray,
    catalog: PipelineCatalog,
    *,
    made_by: str,
) -> None:
    """Set ``ctx`` up to speak in a cloned voice: synthesise with the ``convert`` stage's base
    speaker, then convert to ``embedding``.

    Args:
        made_by: The converter model instance that made ``embedding``: an embedding is a point
            in its own converter's tone-colour space, and another converter would turn it into
            a different voice without a word.

    Raises:
        InvalidRequestError: ``pipeline`` has no ``convert`` stage run by ``made_by`` (the
            message lists the pipelines that have one).
    """
    stage = pipeline.stage("convert")
    if stage is None or stage.model != made_by:
        able = [p.name for p in catalog if (s := p.stage("convert")) and s.model == made_by]
        reason = "cannot speak cloned voices" if stage is None else "cannot speak this voice"
        raise InvalidRequestError(
            f"model {pipeline.name!r} {reason}; use one of: {', '.join(able) or 'none configured'}",
            param="model",
        )
    speech = ctx.require_speech()
    base = ConvertOptions(**stage.options).base_speaker
    ctx.speech = dataclasses.replace(speech, voice=base)
    ctx.target_voice = np.asarray(embedding, dtype=np.float32)
