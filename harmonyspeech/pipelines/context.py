"""The state a request carries through its pipeline's stages."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harmonyspeech.audio import Audio
from harmonyspeech.engine.items import Priority
from harmonyspeech.errors import DeadlineExceededError, InvalidRequestError
from harmonyspeech.models.types import SynthesisRequest, ToneColor, VadParams, VadResult
from harmonyspeech.pipelines.speech import SpeechItem
from harmonyspeech.pipelines.transcripts import Transcript, TranscriptionOptions


@dataclass
class PipelineContext:
    """Inputs and artefacts of one request. Stages read what they need and add their output.

    Attributes:
        priority: Scheduling class for this request's work items.
        streamed: Whether the response sends the first item as soon as it is done (a stream);
            only then does that item jump ahead of other requests' work.
        deadline: ``time.monotonic()`` value after which the request fails with 504.
        admitted: Whether the request's first output is out (its first sentence delivered);
            its later model calls are then queued past full queues (``pipelines.admission``).
        audio: Decoded input audio (VAD, transcription, cloning references).
        vad_params: Per-request VAD overrides.
        vad: Output of the ``vad`` stage.
        transcription: What a transcription request asked for.
        transcript: Output of the ``transcribe`` stage, filled in as windows complete.
        speech: What a speech request asked for: its whole text, voice, speed and knobs; each
            sentence item is synthesised with these, its own text and its own seed.
        speech_items: The request's sentence items, in order, once a speech pipeline ran.
        target_voice: The tone colour a ``convert`` stage re-voices speech to (a cloned voice);
            None: speech keeps the synthesizer's voice.
        tone_color: Output of the ``embed`` stage.
        started: ``time.monotonic()`` when the request started (for time to first audio and
            the real-time factor).
    """

    priority: Priority = Priority.INTERACTIVE
    streamed: bool = True
    deadline: float | None = None
    admitted: bool = False
    audio: Audio | None = None
    vad_params: VadParams = field(default_factory=VadParams)
    vad: VadResult | None = None
    transcription: TranscriptionOptions = field(default_factory=TranscriptionOptions)
    transcript: Transcript | None = None
    speech: SynthesisRequest | None = None
    speech_items: list[SpeechItem] = field(default_factory=list)
    target_voice: np.ndarray | None = None
    tone_color: ToneColor | None = None
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def with_timeout(cls, timeout_s: float | None, **fields: object) -> PipelineContext:
        """A context whose deadline is ``timeout_s`` from now."""
        deadline = time.monotonic() + timeout_s if timeout_s is not None else None
        return cls(deadline=deadline, **fields)  # type: ignore[arg-type]

    def remaining_s(self) -> float | None:
        """Seconds left before the deadline.

        Raises:
            DeadlineExceededError: The deadline has passed.
        """
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceededError("request deadline exceeded")
        return left

    def wait_s(self, work: asyncio.Future[Any]) -> float | None:
        """How long to wait for ``work``: what is left before the deadline, or no time limit
        when it is already done.

        The deadline bounds the models' work, not the client's reading: a stream read at
        playback pace outlasts it with all its audio computed, and must not break off for that.

        Raises:
            DeadlineExceededError: ``work`` is not done and the deadline has passed.
        """
        return None if work.done() else self.remaining_s()

    def item_priority(self, index: int) -> Priority:
        """Priority of a request's ``index``-th work item: a streamed interactive request's
        first item jumps ahead, because it decides the time to the first byte. A response sent
        whole gains nothing from it, and under load its first items would only delay the rest
        of the requests before it, in deadline order (with 20 s deadlines and twice the work
        that fits, all 12 of a load test's transcriptions failed)."""
        if index == 0 and self.priority is Priority.INTERACTIVE and self.streamed:
            return Priority.FIRST_CHUNK
        return self.priority

    def require_speech(self) -> SynthesisRequest:
        if self.speech is None:
            raise InvalidRequestError("this pipeline needs text to speak", param="input")
        return self.speech

    def require_audio(self) -> Audio:
        if self.audio is None:
            raise InvalidRequestError("this pipeline needs input audio", param="file")
        return self.audio
