"""Task-level request and result types exchanged between pipelines and model adapters.

They are family-neutral (any VAD family takes a ``VadRequest``) and travel between processes as
plain dataclasses holding numpy arrays, never as base64 or pickled tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from pydantic import ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

from harmonyspeech.audio import Audio
from harmonyspeech.errors import InvalidRequestError

Probability = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]
Millis = Annotated[int, Field(ge=0, le=60_000)]


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class VadParams:
    """Overrides of a VAD model's defaults (from a request or a pipeline stage); None keeps the
    model's setting. Values are validated on construction."""

    threshold: Probability | None = None
    neg_threshold: Probability | None = None
    min_speech_duration_ms: Millis | None = None
    min_silence_duration_ms: Millis | None = None
    speech_pad_ms: Millis | None = None
    max_speech_duration_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None

    def __post_init__(self) -> None:
        both = self.neg_threshold is not None and self.threshold is not None
        if both and self.neg_threshold > self.threshold:  # type: ignore[operator]
            raise ValueError("neg_threshold must not be above threshold")

    def overrides(self) -> dict[str, Any]:
        """The values set here, to apply over other settings. A threshold set without its
        ``neg_threshold`` resets that one too, to the library's default below the new
        threshold: a ``neg_threshold`` chosen for another threshold may be above it."""
        values = {name: value for name, value in vars(self).items() if value is not None}
        if "threshold" in values:
            values.setdefault("neg_threshold", None)
        return values


def vad_params(**values: Any) -> VadParams:
    """``VadParams`` from values each already checked alone (form fields; a stage's options
    with a request's over them), so that only their order can still be wrong.

    Raises:
        InvalidRequestError: ``neg_threshold`` above ``threshold`` (400).
    """
    try:
        return VadParams(**values)
    except ValidationError:
        raise InvalidRequestError(
            f"neg_threshold ({values.get('neg_threshold')}) must not be above the threshold "
            f"({values.get('threshold')})",
            param="neg_threshold",
        ) from None


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


@dataclass(frozen=True)
class TranscribeWindow:
    """At most 30 s of one request's audio (16 kHz mono) to transcribe or translate.

    ``offset`` places the window in the request's audio, so timestamps come back absolute.
    Windows of different requests are batched together.
    """

    audio: np.ndarray
    offset: float = 0.0
    task: str = "transcribe"
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    word_timestamps: bool = False


@dataclass(frozen=True)
class TranscribedWord:
    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class TranscribedSegment:
    start: float
    end: float
    text: str
    tokens: tuple[int, ...]
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    temperature: float
    words: tuple[TranscribedWord, ...] = ()
    seek: int = 0
    """Where the segment's 30 s window starts, in 10 ms feature frames (Whisper's ``seek``)."""


@dataclass(frozen=True)
class WindowTranscript:
    """What one window said, and in which language (detected when not given)."""

    language: str
    segments: tuple[TranscribedSegment, ...]


@dataclass(frozen=True)
class SynthesisRequest:
    """Text to speak: one sentence item at the model (a whole request's text and seed in the
    pipeline context, from which each item takes the voice, speed and knobs).

    ``voice`` is a speaker name of the model (or one of its configured aliases); the sampling
    knobs default to the model's configured values when None. With a ``seed`` the audio is the
    same whatever batch the item runs in.
    """

    text: str
    voice: str
    speed: float = 1.0
    sdp_ratio: float | None = None
    noise_scale: float | None = None
    noise_scale_w: float | None = None
    seed: int | None = None


@dataclass(frozen=True)
class ToneColorRequest:
    """Reference speech (silence already cut away, e.g. by VAD) to turn into a voice's tone
    colour."""

    speech: Audio


@dataclass(frozen=True)
class ToneColor:
    """A voice's tone-colour embedding and how much speech it was made from."""

    embedding: np.ndarray
    speech_seconds: float


@dataclass(frozen=True)
class ConversionRequest:
    """Synthesised speech to re-voice from a MeloTTS speaker's tone colour to ``target``.

    ``tau`` defaults to the model's configured value; with a ``seed`` the result is the same
    whatever batch the item runs in.
    """

    audio: Audio
    source_speaker: str
    target: np.ndarray
    tau: float | None = None
    seed: int | None = None
