"""Which adapter implements each model family, and which pipeline tasks it performs.

Adapters are imported lazily by dotted path so that listing families or validating a config never
imports torch or other heavy libraries.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from harmonyspeech.config import ModelConfigBase
from harmonyspeech.errors import ConfigError
from harmonyspeech.models.base import ModelAdapter


@dataclass(frozen=True)
class FamilyInfo:
    """How to build a family's adapter and what it can do."""

    adapter: str
    """``module:Class`` of the adapter."""

    tasks: frozenset[str]
    """Pipeline stage kinds this family can run."""


FAMILIES: dict[str, FamilyInfo] = {
    "silero-vad": FamilyInfo(
        adapter="harmonyspeech.models.silero_vad:SileroVadAdapter",
        tasks=frozenset({"vad"}),
    ),
    "faster-whisper": FamilyInfo(
        adapter="harmonyspeech.models.faster_whisper:FasterWhisperAdapter",
        tasks=frozenset({"transcribe", "validate"}),
    ),
    "melotts": FamilyInfo(
        adapter="harmonyspeech.models.melotts:MeloTTSAdapter",
        tasks=frozenset({"synthesize"}),
    ),
    "openvoice": FamilyInfo(
        adapter="harmonyspeech.models.tone_color:OpenVoiceAdapter",
        tasks=frozenset({"embed", "convert"}),
    ),
}


def family_info(family: str) -> FamilyInfo:
    """The registry entry for ``family``."""
    try:
        return FAMILIES[family]
    except KeyError:
        known = ", ".join(sorted(FAMILIES))
        problem = ("family", f"unknown model family {family!r}; known: {known}")
        raise ConfigError([problem]) from None


def create_adapter(config: ModelConfigBase) -> ModelAdapter:
    """Instantiate (without loading) the adapter for a model instance."""
    family: str = config.family  # type: ignore[attr-defined]
    module_name, class_name = family_info(family).adapter.split(":")
    adapter_cls = getattr(importlib.import_module(module_name), class_name)
    return adapter_cls(config)
