"""The MeloTTS adapter on the tiny checkpoint and BERT: items that normalise very long are cut."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from harmonyspeech.config import MeloTTSModelConfig
from harmonyspeech.errors import InvalidRequestError
from harmonyspeech.models.melotts import MeloTTSAdapter
from harmonyspeech.models.types import SynthesisRequest
from harmonyspeech.text.sentences import gap_samples, item_seed
from tests.conftest import TinyWeights, served_config


@pytest.fixture(scope="module")
def adapter(tiny_weights: TinyWeights) -> Iterator[MeloTTSAdapter]:
    threads = torch.get_num_threads()
    [config] = [m for m in served_config(tiny_weights).models if m.family == "melotts"]
    assert isinstance(config, MeloTTSModelConfig)
    melo = MeloTTSAdapter(config)
    melo.load()
    yield melo
    torch.set_num_threads(threads)


def test_an_item_spelled_out_long_is_synthesised_in_pieces_and_joined(
    adapter: MeloTTSAdapter,
) -> None:
    digits = "1" * 200  # one sentence chunk: 200 words, 799 characters once spelled out
    speed = 1.25
    [joined] = adapter.infer_batch([SynthesisRequest(digits, voice="EN-US", speed=speed, seed=7)])
    pieces = adapter._frontend.pieces(digits)
    assert len(pieces) == 2
    # Each piece alone, with the seed the adapter derives for it, gives one segment.
    alone = adapter.infer_batch(
        [
            SynthesisRequest(
                piece.normalized_text, voice="EN-US", speed=speed, seed=item_seed(7, index)
            )
            for index, piece in enumerate(pieces)
        ]
    )
    gap = np.zeros(gap_samples(joined.sample_rate, speed), dtype=np.float32)
    expected = np.concatenate([part for audio in alone for part in (audio.samples, gap)][:-1])
    assert joined.samples.shape == expected.shape
    np.testing.assert_allclose(joined.samples, expected, atol=1e-4)


def test_an_ordinary_item_is_reproducible_with_its_seed(adapter: MeloTTSAdapter) -> None:
    request = SynthesisRequest("Hello there, how are you?", voice="EN-US", seed=11)
    first, again = adapter.infer_batch([request, request])
    np.testing.assert_allclose(first.samples, again.samples, atol=1e-4)
    assert first.sample_rate == 44100


def test_a_bad_item_fails_alone_next_to_a_cut_one(adapter: MeloTTSAdapter) -> None:
    long, bad = adapter.infer_batch(
        [SynthesisRequest("2" * 150, voice="EN-US", seed=1), SynthesisRequest("Hi", voice="?")]
    )
    assert isinstance(bad, InvalidRequestError) and bad.param == "voice"
    assert not isinstance(long, Exception) and long.duration > 1.0


def test_text_with_nothing_to_speak_is_no_audio_next_to_a_spoken_item(
    adapter: MeloTTSAdapter,
) -> None:
    # Emoji, symbols and scripts the English frontend drops used to be a short noise (the
    # network on pads alone); now they are nothing, which the pipeline makes the sentence pause.
    silent = ["😀", "∑∫√∞", "###", "こんにちは", "\u200b"]
    results = adapter.infer_batch(
        [SynthesisRequest(text, voice="EN-US", seed=3) for text in [*silent, "Hello there."]]
    )
    for text, audio in zip(silent, results, strict=False):
        assert not isinstance(audio, Exception), text
        assert audio.samples.size == 0 and audio.sample_rate == 44100, text
    assert results[-1].duration > 0.2
