"""Speech requests: text split into sentence items that are scheduled one by one.

Each item goes through the pipeline's item stages on its own (synthesis, then any later item
stage), so the scheduler can batch items of many requests; results come back in order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from harmonyspeech.audio import OUTPUT_RATE, Audio, encode_audio
from harmonyspeech.pipelines.validation import Score
from harmonyspeech.text.sentences import gap_samples


@dataclass
class SpeechItem:
    """One sentence of a request and, once synthesised, its audio (gap included).

    Attributes:
        attempts: Times the sentence was synthesised (more than one after validation retries).
        score: How Whisper's transcript of ``audio`` matched ``text``, with a ``validate`` stage;
            while attempts go on, the best score so far.
        best_audio: The audio of the best-scoring attempt so far.
        retry: Set by a stage that wants the sentence synthesised again (with ``seed``).
        silent: The synthesizer found nothing to speak in ``text`` (emoji, symbols, a script its
            language drops): like a pause, no later stage works on it.
    """

    index: int
    text: str
    seed: int | None
    audio: Audio | None = None
    attempts: int = 0
    score: Score | None = None
    best_audio: Audio | None = None
    retry: bool = False
    silent: bool = False

    @property
    def is_pause(self) -> bool:
        """Whether the item has nothing to speak (the whole input was punctuation, e.g.
        "...", or nothing the synthesizer can speak): its audio is the inter-piece silence, and
        no (further) model runs on it."""
        return not self.text or self.silent


def pause(speed: float) -> Audio:
    """The audio of an item with nothing to speak: the inter-piece silence alone."""
    return with_gap(Audio(np.zeros(0, dtype=np.float32), OUTPUT_RATE), speed)


def retries(items: Iterable[SpeechItem]) -> int:
    """Extra syntheses the request's sentences needed (validation retries)."""
    return sum(max(item.attempts - 1, 0) for item in items)


def with_gap(audio: Audio, speed: float) -> Audio:
    """``audio`` followed by the inter-piece silence (``GAP_S`` / speed, as upstream MeloTTS)."""
    gap = np.zeros(gap_samples(audio.sample_rate, speed), dtype=np.float32)
    return Audio(np.concatenate([audio.samples, gap]), audio.sample_rate)


def joined(items: list[SpeechItem]) -> Audio:
    """All items' audio in order."""
    audios = [item.audio for item in items if item.audio is not None]
    if not audios:
        raise ValueError("no audio to join")
    rate = audios[0].sample_rate
    return Audio(np.concatenate([a.samples for a in audios]), rate)


def encoded_file(items: list[SpeechItem], fmt: str) -> bytes:
    """All items' audio as one complete file of format ``fmt`` (CPU work: run it in a thread)."""
    audio = joined(items)
    return encode_audio(audio.samples, input_rate=audio.sample_rate, fmt=fmt)
