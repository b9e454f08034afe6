"""The OpenVoice adapter through the real worker: embeddings, batched conversion, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from harmonyspeech.audio import Audio
from harmonyspeech.config import BatchingPolicy, OpenVoiceModelConfig
from harmonyspeech.engine.worker import ModelWorker
from harmonyspeech.errors import InvalidRequestError
from harmonyspeech.models.openvoice import build_converter_checkpoint
from harmonyspeech.models.tone_color import OpenVoiceAdapter, split_pieces
from harmonyspeech.models.types import ConversionRequest, ToneColor, ToneColorRequest


def _speech(seconds: float, rate: int, seed: int) -> Audio:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    wave = 0.3 * np.sin(2 * np.pi * (110 + 30 * seed) * t) + 0.02 * rng.standard_normal(t.size)
    return Audio(wave.astype(np.float32), rate)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_converter_checkpoint(tmp_path_factory.mktemp("openvoice"), size="tiny")


def _worker(weights: Path | None, dtype: str = "float32", **policy: object) -> ModelWorker:
    config = OpenVoiceModelConfig.model_validate(
        {
            "name": "openvoice",
            "family": "openvoice",
            "num_threads": 1,
            "dtype": dtype,
            "weights": {"path": str(weights)} if weights else {"allow_random": True},
            "options": {"min_speech_s": 2.0, "piece_s": 1.5, "random_size": "tiny"},
        }
    )
    policy = {"max_batch_size": 8, "max_wait_ms": 0, **policy}
    return ModelWorker(OpenVoiceAdapter(config), BatchingPolicy(**policy), name="openvoice")


@pytest.fixture
def worker(weights: Path) -> Iterator[ModelWorker]:
    created = _worker(weights)
    yield created
    created.stop()


def test_a_reference_becomes_a_tone_colour(worker: ModelWorker) -> None:
    worker.start()
    voice = worker.submit(ToneColorRequest(_speech(4.0, 16000, 1))).result(timeout=60)
    assert isinstance(voice, ToneColor)
    assert voice.embedding.shape == (256,) and voice.speech_seconds == pytest.approx(4.0)
    other = worker.submit(ToneColorRequest(_speech(4.0, 16000, 2))).result(timeout=60)
    assert not np.allclose(voice.embedding, other.embedding)


def test_too_little_speech_says_how_much_was_found_and_needed(worker: ModelWorker) -> None:
    worker.start()
    future = worker.submit(ToneColorRequest(_speech(1.2, 16000, 1)))
    with pytest.raises(InvalidRequestError, match=r"holds 1\.2 s of speech; at least 2\.0 s"):
        future.result(timeout=60)


def test_conversions_batch_and_equal_each_one_alone(weights: Path, worker: ModelWorker) -> None:
    target = np.linspace(-0.1, 0.1, 256, dtype=np.float32)
    requests = [
        ConversionRequest(_speech(s, 44100, i), "EN-US", target, seed=i)
        for i, s in enumerate([0.5, 1.4, 0.9])
    ]
    futures = [worker.submit(r) for r in requests]
    worker.start()
    together = [f.result(timeout=60) for f in futures]
    assert worker.stats.snapshot()["batch_sizes"] == {"3": 1}

    alone = _worker(weights, max_batch_size=1)
    try:
        alone.start()
        for request, batched in zip(requests, together, strict=True):
            single = alone.submit(request).result(timeout=60)
            assert batched.sample_rate == single.sample_rate == 22050
            assert abs(batched.duration - request.audio.duration) < 256 / 22050
            # float32 rounding; exact in float64 (test_converter)
            np.testing.assert_allclose(batched.samples, single.samples, atol=1e-4)
    finally:
        alone.stop()


def test_an_unknown_source_speaker_fails_alone(worker: ModelWorker) -> None:
    target = np.zeros(256, dtype=np.float32)
    good = worker.submit(ConversionRequest(_speech(0.5, 44100, 1), "EN_INDIA", target, seed=1))
    bad = worker.submit(ConversionRequest(_speech(0.5, 44100, 1), "FR", target))
    worker.start()
    assert good.result(timeout=60).samples.size > 0
    with pytest.raises(InvalidRequestError, match="no tone colour for speaker 'FR'") as caught:
        bad.result(timeout=60)
    assert caught.value.param == "voice"


def test_without_weights_it_runs_on_random_ones_and_says_so() -> None:
    worker = _worker(None)
    try:
        worker.start()
        assert worker.wait_ready(timeout=120)
        facts = worker.adapter.describe()
        assert facts["random_weights"] is True and "EN-US" in facts["base_speakers"]
        voice = worker.submit(ToneColorRequest(_speech(3.0, 22050, 1))).result(timeout=60)
        assert voice.embedding.shape == (256,)
    finally:
        worker.stop()


def test_the_decoder_runs_in_the_configured_precision(weights: Path) -> None:
    worker = _worker(weights, dtype="bfloat16")
    try:
        worker.start()
        assert worker.wait_ready(timeout=120)
        assert worker.adapter.describe()["decoder_dtype"] == "bfloat16"
        request = ConversionRequest(_speech(0.8, 22050, 3), "EN-US", np.zeros(256, np.float32))
        converted = worker.submit(request).result(timeout=60)
        assert converted.samples.dtype == np.float32 and np.abs(converted.samples).max() > 0
    finally:
        worker.stop()


def test_reference_pieces_are_about_piece_s_long() -> None:
    pieces = split_pieces(np.zeros(22050 * 25, dtype=np.float32), 10.0, 22050)
    assert [p.size for p in pieces] == [22050 * 25 // 2] * 2
    assert len(split_pieces(np.zeros(22050 * 3, dtype=np.float32), 10.0, 22050)) == 1
