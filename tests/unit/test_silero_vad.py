"""The Silero VAD adapter against the library's own reference implementation."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from harmonyspeech.audio import resample
from harmonyspeech.config import SileroVadModelConfig, SileroVadOptions
from harmonyspeech.errors import InvalidRequestError
from harmonyspeech.models.silero_vad import SileroVadAdapter, effective_options
from harmonyspeech.models.types import VadParams, VadRequest
from tests.unit.vad_clips import clip, regions


@pytest.fixture(scope="module")
def adapter() -> SileroVadAdapter:
    vad = SileroVadAdapter(SileroVadModelConfig(name="vad", family="silero-vad", num_threads=1))
    vad.load()
    return vad


def reference_segments(adapter: SileroVadAdapter, audio: np.ndarray) -> list[tuple[float, float]]:
    import torch
    from silero_vad import get_speech_timestamps

    spans = get_speech_timestamps(torch.from_numpy(audio), adapter._model, sampling_rate=16000)
    return [(round(s["start"] / 16000, 3), round(s["end"] / 16000, 3)) for s in spans]


def test_load_restores_the_configured_thread_count(adapter: SileroVadAdapter) -> None:
    import torch

    assert torch.get_num_threads() == 1  # num_threads=1 in the config, set after the import
    other = SileroVadAdapter(SileroVadModelConfig(name="v2", family="silero-vad", num_threads=2))
    try:
        other.load()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)  # the setting is process-wide; leave it as other tests expect


def test_batched_segments_equal_the_library_reference(adapter: SileroVadAdapter) -> None:
    names = list(regions())
    results = adapter.infer_batch([VadRequest(clip(n), 16000) for n in names])
    for name, result in zip(names, results, strict=True):
        ours = [(s.start, s.end) for s in result.segments]
        assert ours == reference_segments(adapter, clip(name)), name


def test_batched_probabilities_match_single_streams(adapter: SileroVadAdapter) -> None:
    streams = [clip(n) for n in regions()]
    together = adapter.frame_probabilities(streams)
    for stream, batched in zip(streams, together, strict=True):
        [alone] = adapter.frame_probabilities([stream])
        assert batched.shape == alone.shape == (-(-len(stream) // 512),)
        np.testing.assert_allclose(batched, alone, atol=1e-5)


def test_other_input_rates_are_resampled(adapter: SileroVadAdapter) -> None:
    audio = clip("two_phrases")
    at_16k = adapter.infer_batch([VadRequest(audio, 16000)])[0]
    at_44k = adapter.infer_batch([VadRequest(resample(audio, 16000, 44100), 44100)])[0]
    assert len(at_44k.segments) == len(at_16k.segments)
    for a, b in zip(at_16k.segments, at_44k.segments, strict=True):
        assert abs(a.start - b.start) < 0.05 and abs(a.end - b.end) < 0.05


def test_request_overrides_apply_per_item(adapter: SileroVadAdapter) -> None:
    audio = clip("distractors")
    split, merged = adapter.infer_batch(
        [
            VadRequest(audio, 16000, VadParams(min_silence_duration_ms=50)),
            VadRequest(audio, 16000, VadParams(min_silence_duration_ms=400)),
        ]
    )
    assert len(split.segments) > len(merged.segments) == len(regions()["distractors"]["speech"])


def test_effective_options_keep_defaults_for_unset_fields() -> None:
    merged = effective_options(SileroVadOptions(threshold=0.4), VadParams(speech_pad_ms=0))
    assert (merged.threshold, merged.speech_pad_ms, merged.min_speech_duration_ms) == (0.4, 0, 250)


def test_empty_and_multichannel_items_fail_alone(adapter: SileroVadAdapter) -> None:
    good, empty, stereo = adapter.infer_batch(
        [
            VadRequest(clip("short"), 16000),
            VadRequest(np.zeros(0, np.float32), 16000),
            VadRequest(np.zeros((2, 100), np.float32), 16000),
        ]
    )
    assert good.segments
    assert isinstance(empty, Exception) and isinstance(stereo, Exception)


def test_a_neg_threshold_above_the_threshold_fails_alone(adapter: SileroVadAdapter) -> None:
    audio = clip("short")
    equal, above_the_model = adapter.infer_batch(
        [
            VadRequest(audio, 16000, VadParams(threshold=0.5, neg_threshold=0.5)),
            # Against the model's threshold (0.5) when the request sets only neg_threshold.
            VadRequest(audio, 16000, VadParams(neg_threshold=0.6)),
        ]
    )
    assert equal.segments
    assert isinstance(above_the_model, InvalidRequestError)
    assert above_the_model.param == "neg_threshold"
    assert "must not be above threshold (0.5)" in above_the_model.message
    with pytest.raises(ValidationError, match="neg_threshold must not be above threshold"):
        VadParams(threshold=0.3, neg_threshold=0.8)


def test_a_threshold_set_alone_brings_its_own_neg_threshold() -> None:
    # A neg_threshold chosen for the model's threshold may be above the request's.
    defaults = SileroVadOptions(threshold=0.5, neg_threshold=0.3)
    merged = effective_options(defaults, VadParams(threshold=0.2))
    assert (merged.threshold, merged.neg_threshold) == (0.2, None)
    kept = effective_options(defaults, VadParams(speech_pad_ms=10))
    assert (kept.threshold, kept.neg_threshold) == (0.5, 0.3)
