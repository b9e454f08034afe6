"""Whisper validation of synthesised speech: scoring, and the retry policy through the runner.

The runner tests use scripted model clients (allowed for pipeline-runner unit tests): the
synthesizer's audio encodes the seed it was given, and the transcriber's answer depends only on
that audio, so the scorer is deterministic and every retry decision can be checked exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from harmonyspeech.audio import Audio
from harmonyspeech.config import load_config
from harmonyspeech.engine.items import Priority
from harmonyspeech.errors import ConfigError
from harmonyspeech.models.types import (
    SynthesisRequest,
    TranscribedSegment,
    TranscribeWindow,
    WindowTranscript,
)
from harmonyspeech.pipelines.context import PipelineContext
from harmonyspeech.pipelines.runner import PipelineRunner
from harmonyspeech.pipelines.spec import build_catalog
from harmonyspeech.pipelines.validation import (
    Score,
    ValidationOptions,
    normalize_for_scoring,
    request_score,
    retry_seed,
    score_transcript,
    should_retry,
)
from harmonyspeech.text.sentences import item_seed

# -- scoring ---------------------------------------------------------------------------------


def test_normalisation_writes_out_numbers_and_drops_case_and_punctuation() -> None:
    text = "Dr. Smith paid $3.50 -- at 10:30pm!"
    assert normalize_for_scoring(text, "en") == (
        "doctor smith paid three dollars fifty cents at ten thirty p m"
    )
    assert normalize_for_scoring("Bonjour, le Monde !", "fr") == "bonjour le monde"


def test_a_transcript_that_spells_out_what_the_text_abbreviates_scores_zero() -> None:
    score = score_transcript(
        "Dr. Smith paid $3.50.", "Doctor Smith paid three dollars, fifty cents.", "en"
    )
    assert (score.metric, score.errors, score.units, score.rate) == ("wer", 0, 7, 0.0)


def test_word_error_rate_counts_substitutions_deletions_and_insertions() -> None:
    score = score_transcript("the cat sat on the mat", "the cat sat on a big mat", "en")
    assert (score.errors, score.units) == (2, 6)  # "the" -> "a", "big" inserted
    assert score.rate == pytest.approx(2 / 6)


def test_other_languages_use_character_error_rate() -> None:
    score = score_transcript("猫が好き", "犬が好き。", "ja")
    assert (score.metric, score.errors, score.units) == ("cer", 1, 4)


def test_empty_sides_score_as_all_deletions_or_insertions() -> None:
    assert score_transcript("hello world", "", "en").rate == 1.0
    assert score_transcript("hello world", "  ...  ", "en").errors == 2
    assert score_transcript("", "", "en").rate == 0.0
    assert score_transcript("!", "uh huh", "en").rate == 1.0


def test_request_score_weights_sentences_by_their_length() -> None:
    short = Score("wer", 1, 2, "a")
    long = Score("wer", 0, 8, "b")
    total = request_score([short, None, long])
    assert total is not None
    assert (total.errors, total.units, total.rate) == (1, 10, 0.1)
    assert total.transcript == "a b"
    assert request_score([None, None]) is None


def test_retry_policy_and_seeds() -> None:
    options = ValidationOptions(threshold=0.3, max_retries=2)
    bad, good = Score("wer", 1, 2, ""), Score("wer", 0, 2, "")
    assert should_retry(bad, 1, options) and should_retry(bad, 2, options)
    assert not should_retry(bad, 3, options)
    assert not should_retry(good, 1, options)
    assert retry_seed(None, 1) is None
    seeds = {retry_seed(5, attempt) for attempt in range(1, 4)}
    assert len(seeds) == 3 and retry_seed(5, 1) == retry_seed(5, 1)


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="threshold"):
        ValidationOptions(threshold=-1)
    with pytest.raises(ValueError, match="extra"):
        ValidationOptions(retries=2)  # type: ignore[call-arg]


# -- the stage in a pipeline -----------------------------------------------------------------

# Three sentences long enough (over 256 characters) to become three items; 51 words each.
FILLER = " ".join(["words"] * 50)
SENTENCES = f"First {FILLER}. Hard {FILLER}. Third {FILLER}."
WORDS = 3 * 51


def config(**options: Any) -> dict[str, Any]:
    return {
        "models": [
            {"name": "melo", "family": "melotts"},
            {"name": "whisper", "family": "faster-whisper"},
        ],
        "pipelines": [
            {
                "name": "checked",
                "stages": [
                    {"kind": "synthesize", "model": "melo"},
                    {"kind": "validate", "model": "whisper", "options": options},
                ],
            }
        ],
    }


class SeedSynth:
    """Synthesises 0.1 s of audio whose samples are the call's number, so a transcriber can
    tell which call (text and seed) made it."""

    def __init__(self) -> None:
        self.calls: list[SynthesisRequest] = []

    async def infer(
        self, payload: Any, *, priority: Priority, timeout_s: float | None, admitted: bool = False
    ) -> Any:
        assert isinstance(payload, SynthesisRequest)
        self.calls.append(payload)
        return Audio(np.full(4410, len(self.calls) - 1, dtype=np.float32), 44100)

    def seed_of(self, audio: Audio | None) -> int | None:
        assert audio is not None
        return self.calls[round(float(audio.samples[0]))].seed


class SeedTranscriber:
    """Hears the sentence right only when the seed is in ``good_seeds`` (or always, if None)."""

    def __init__(self, synth: SeedSynth, good_seeds: set[int] | None):
        self.synth = synth
        self.good_seeds = good_seeds

    async def infer(
        self, payload: Any, *, priority: Priority, timeout_s: float | None, admitted: bool = False
    ) -> Any:
        assert isinstance(payload, TranscribeWindow) and payload.language == "en"
        call = self.synth.calls[round(float(payload.audio[len(payload.audio) // 2]))]
        good = self.good_seeds is None or call.seed in self.good_seeds
        heard = call.text if good else "noise"
        segment = TranscribedSegment(0.0, 0.1, heard, (), 0.0, 0.0, 1.0, 0.0)
        return WindowTranscript(language="en", segments=(segment,))


async def run_checked(
    good_seeds: set[int] | None, *, seed: int = 7, **options: Any
) -> tuple[PipelineContext, SeedSynth]:
    pipeline = build_catalog(load_config(config(**options))).resolve("checked")
    synth = SeedSynth()
    clients = {"melo": synth, "whisper": SeedTranscriber(synth, good_seeds)}
    speech = SynthesisRequest(text=SENTENCES, voice="EN-US", seed=seed)
    ctx = PipelineContext.with_timeout(10.0, speech=speech)
    return await PipelineRunner(clients).run(pipeline, ctx), synth


async def test_sentences_that_pass_are_synthesised_once_and_scored() -> None:
    ctx, synth = await run_checked(None)
    assert len(synth.calls) == 3
    assert [item.attempts for item in ctx.speech_items] == [1, 1, 1]
    assert all(item.score and item.score.rate == 0.0 for item in ctx.speech_items)
    total = request_score(item.score for item in ctx.speech_items)
    assert total is not None and total.rate == 0.0 and total.units == WORDS


async def test_a_bad_sentence_is_retried_with_a_new_seed_until_it_passes() -> None:
    first_seeds = {item_seed(7, i) for i in range(3)}
    second = retry_seed(item_seed(7, 1), 1)
    assert second is not None
    ctx, synth = await run_checked(first_seeds - {item_seed(7, 1)} | {second}, max_retries=3)
    assert [item.attempts for item in ctx.speech_items] == [1, 2, 1]
    hard = ctx.speech_items[1]
    assert hard.score is not None and hard.score.rate == 0.0
    assert synth.seed_of(hard.audio) == second  # the passing attempt
    assert [c.seed for c in synth.calls if c.text.startswith("Hard")] == [
        item_seed(7, 1),
        second,
    ]


async def test_retries_are_bounded_and_the_best_attempt_is_kept() -> None:
    first = item_seed(7, 1)
    ctx, synth = await run_checked({item_seed(7, 0), item_seed(7, 2)}, max_retries=2)
    hard = ctx.speech_items[1]
    assert hard.attempts == 3  # the first try and two retries, all bad
    assert sum(c.text.startswith("Hard") for c in synth.calls) == 3
    assert hard.score is not None and hard.score.rate == 1.0
    # Every attempt scored the same, so the first one (the earliest best) is kept.
    assert synth.seed_of(hard.audio) == first
    total = request_score(item.score for item in ctx.speech_items)
    # "noise" for 51 words: 50 deletions and one substitution.
    assert total is not None and (total.errors, total.units) == (51, WORDS)


async def test_no_retries_when_the_policy_allows_none() -> None:
    ctx, synth = await run_checked(set(), max_retries=0)
    assert len(synth.calls) == 3
    assert all(item.score and item.score.rate == 1.0 for item in ctx.speech_items)


def test_validate_needs_a_synthesize_stage_before_it() -> None:
    data = config()
    data["pipelines"][0]["stages"].reverse()
    with pytest.raises(ConfigError) as info:
        build_catalog(load_config(data))
    problems = dict(info.value.problems)
    assert "needs a 'synthesize' stage before it" in problems["pipelines[0].stages[0].kind"]


def test_validate_runs_on_a_whisper_model_only_with_valid_options() -> None:
    data = config(threshold="high")
    with pytest.raises(ConfigError) as info:
        build_catalog(load_config(data))
    assert "pipelines[0].stages[1].options.threshold" in dict(info.value.problems)
    data = config()
    data["pipelines"][0]["stages"][1]["model"] = "melo"
    with pytest.raises(ConfigError, match="cannot run a 'validate' stage"):
        build_catalog(load_config(data))


def test_a_language_whisper_does_not_know_fails_the_config_check() -> None:
    # It passed, then every speech request was a 400 naming `language`, which it never sent.
    with pytest.raises(ConfigError) as info:
        build_catalog(load_config(config(language="EN")))
    [(where, message)] = info.value.problems
    assert where.startswith("pipelines[0].stages[1].options")
    assert "'EN' is not a Whisper language code" in message


async def test_a_sentence_with_nothing_to_speak_is_a_pause_whisper_does_not_check() -> None:
    # The synthesizer answers no audio for text it cannot speak (emoji alone): Whisper would
    # have scored the silence as all wrong and had it synthesised again, max_retries times.
    pipeline = build_catalog(load_config(config())).resolve("checked")
    synth = SilentSynth()
    clients = {"melo": synth, "whisper": SeedTranscriber(SeedSynth(), None)}
    ctx = PipelineContext.with_timeout(10.0, speech=SynthesisRequest(text="😀", voice="EN-US"))
    [item] = [item async for item in PipelineRunner(clients).stream(pipeline, ctx)]
    assert item.is_pause and synth.calls == 1 and item.score is None
    assert item.audio is not None and item.audio.duration == pytest.approx(0.05)


class SilentSynth:
    """Finds nothing to speak in any text, as the MeloTTS adapter in emoji alone."""

    def __init__(self) -> None:
        self.calls = 0

    async def infer(
        self, payload: Any, *, priority: Priority, timeout_s: float | None, admitted: bool = False
    ) -> Any:
        self.calls += 1
        return Audio(np.zeros(0, dtype=np.float32), 44100)
