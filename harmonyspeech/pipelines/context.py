"""The state a request carries through its pipeline's stages."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from harmonyspeech.audio import Audio
from harmonyspeech.engine.items import Priority
from harmonyspeech.errors import DeadlineExceededError, InvalidRequestError
from harmonyspeech.models.types import VadParams, VadResult


@dataclass
class PipelineContext:
    """Inputs and artefacts of one request. Stages read what they need and add their output.

    Attributes:
        priority: Scheduling class for this request's work items.
        deadline: ``time.monotonic()`` value after which the request fails with 504.
        audio: Decoded input audio (VAD, transcription, cloning references).
        vad_params: Per-request VAD overrides.
        vad: Output of the ``vad`` stage.
    """

    priority: Priority = Priority.INTERACTIVE
    deadline: float | None = None
    audio: Audio | None = None
    vad_params: VadParams = field(default_factory=VadParams)
    vad: VadResult | None = None

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

    def require_audio(self) -> Audio:
        if self.audio is None:
            raise InvalidRequestError("this pipeline needs input audio", param="file")
        return self.audio
