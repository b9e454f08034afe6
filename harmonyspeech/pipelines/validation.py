"""Scoring synthesised speech against its text: normalisation, WER/CER, and the retry policy.

The ``validate`` stage transcribes each synthesised sentence with Whisper and scores the
transcript against the sentence: word error rate for English, character error rate for other
languages (word boundaries mean little in scripts without spaces). Both texts are normalised
first, so that "Dr. Smith paid $3.50" and Whisper's "Doctor Smith paid three dollars fifty" do
not count as errors. A sentence scoring above the threshold is synthesised again with a new
seed, up to ``max_retries`` times, and the best attempt is kept.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

from harmonyspeech.pipelines.transcripts import LANGUAGE_NAMES

_NOT_WORD = re.compile(r"[^\w\s']|_")
_SPACES = re.compile(r"\s+")


class ValidationOptions(BaseModel):
    """Options of a ``validate`` stage (its ``options`` mapping in the pipeline config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    language: str = Field(
        "en",
        description="Language the synthesised speech is in: Whisper is told so, and it picks "
        "the metric (WER for English, CER otherwise).",
    )
    threshold: float = Field(
        0.35,
        ge=0.0,
        description="Highest acceptable error rate of a sentence; above it the sentence is "
        "synthesised again (while retries remain).",
    )
    max_retries: int = Field(
        2, ge=0, le=10, description="Extra synthesis attempts per sentence that fails the check."
    )

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        # Checked with the config: a bad code made every speech request a 400 that blamed
        # the client's `language`, a field it never sent.
        if value not in LANGUAGE_NAMES:
            raise ValueError(f"{value!r} is not a Whisper language code (such as 'en' or 'de')")
        return value

    @property
    def metric(self) -> str:
        return "wer" if self.language == "en" else "cer"


@dataclass(frozen=True)
class Score:
    """How one transcript compares with the text it should say.

    ``errors`` (substitutions + deletions + insertions) over ``units`` (reference words, or
    characters for CER), so scores of several sentences add up into the request's score.
    """

    metric: str
    errors: int
    units: int
    transcript: str

    @property
    def rate(self) -> float:
        if self.units == 0:
            return 0.0 if self.errors == 0 else 1.0
        return self.errors / self.units


def normalize_for_scoring(text: str, language: str) -> str:
    """Case, punctuation and (for English) numbers, abbreviations and times written out."""
    text = unicodedata.normalize("NFKC", text)
    if language == "en":
        from harmonyspeech.text.en_normalize import normalize_english

        text = normalize_english(text)
    text = _NOT_WORD.sub(" ", text.lower())
    return _SPACES.sub(" ", text).strip()


def score_transcript(reference: str, transcript: str, language: str) -> Score:
    """Score ``transcript`` against ``reference`` (both normalised here)."""
    import jiwer

    ref = normalize_for_scoring(reference, language)
    hyp = normalize_for_scoring(transcript, language)
    metric = "wer" if language == "en" else "cer"
    if not ref or not hyp:
        # jiwer refuses an empty reference; an empty side is all insertions or all deletions.
        units = len(ref.split()) if metric == "wer" else len(ref.replace(" ", ""))
        errors = len(hyp.split()) if metric == "wer" else len(hyp.replace(" ", ""))
        return Score(metric, max(units, errors), units, transcript)
    if metric == "wer":
        out = jiwer.process_words(ref, hyp)
        units = len(ref.split())
    else:
        ref, hyp = ref.replace(" ", ""), hyp.replace(" ", "")
        out = jiwer.process_characters(ref, hyp)
        units = len(ref)
    return Score(metric, out.substitutions + out.deletions + out.insertions, units, transcript)


def should_retry(score: Score, attempts: int, options: ValidationOptions) -> bool:
    """Whether a sentence that scored ``score`` on its ``attempts``-th try is synthesised again."""
    return score.rate > options.threshold and attempts <= options.max_retries


def retry_seed(seed: int | None, attempt: int) -> int | None:
    """The seed of a sentence's next attempt: reproducible for a seeded request."""
    if seed is None:
        return None
    return (seed * 7919 + 104_729 * attempt) % (2**31)


def request_score(scores: Iterable[Score | None]) -> Score | None:
    """The request's score: errors over units of all its scored sentences."""
    present = [s for s in scores if s is not None]
    if not present:
        return None
    return Score(
        present[0].metric,
        sum(s.errors for s in present),
        sum(s.units for s in present),
        " ".join(s.transcript.strip() for s in present),
    )
