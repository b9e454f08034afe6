"""Task-level request and result types exchanged between pipelines and model adapters.

They are family-neutral (any VAD family takes a ``VadRequest``) and travel between processes as
plain dataclasses holding numpy arrays, never as base64 or pickled tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class VadParams:
    """Per-request overrides of a VAD model's defaults; None keeps the model's setting."""

    threshold: float | None = None
    neg_threshold: float | None = None
    min_speech_duration_ms: int | None = None
    min_silence_duration_ms: int | None = None
    speech_pad_ms: int | None = None
    max_speech_duration_s: float | None = None


@dataclass(frozen=True)
class VadRequest:
    """Detect speech in one mono float32 stream at the model's sampling rate."""

    audio: np.ndarray
    sample_rate: int
    params: VadParams = field(default_factory=VadParams)


@dataclass(frozen=True)
class SpeechSegment:
    """A span of speech, in seconds from the start of the stream."""

    start: float
    end: float


@dataclass(frozen=True)
class VadResult:
    """Speech segments found in a stream of ``duration`` seconds."""

    duration: float
    segments: tuple[SpeechSegment, ...]
