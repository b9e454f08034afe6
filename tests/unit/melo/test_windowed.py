"""Windowed decoding gives the samples of one pass: the receptive radius really bounds it."""

from __future__ import annotations

import math

import pytest
import torch

from harmonyspeech.models.melo import MeloSynthesizer
from harmonyspeech.models.melo.generator import CPU_DECODER_WINDOW
from harmonyspeech.models.melo.network import bucket_length
from tests.unit.melo.helpers import make_item, max_abs_diff


@pytest.fixture
def decoder(tiny_synth: MeloSynthesizer):
    return tiny_synth.network.dec


def _latents(batch: int, frames: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 16, frames, generator=gen), torch.randn(batch, 16, 1, generator=gen)


@torch.inference_mode()
def test_no_sample_depends_on_frames_beyond_the_radius(decoder) -> None:
    z, g = _latents(1, 120)
    radius, hop = decoder.receptive_radius(), math.prod(decoder.upsample_rates)
    before = decoder(z, g)[0, 0]
    changed = z.clone()
    changed[..., 60] += 1.0
    after = decoder(changed, g)[0, 0]
    differs = (before != after).nonzero().flatten()
    assert differs.numel() > 0
    # Frame 60 covers samples [60 * hop, 61 * hop); nothing beyond the radius may move.
    assert int(differs.min()) >= (60 - radius) * hop
    assert int(differs.max()) < (61 + radius) * hop


ROUNDINGS = [pytest.param(None, id="exact-last-window"), pytest.param(bucket_length, id="bucketed")]


@pytest.mark.parametrize("rounded", ROUNDINGS)
@pytest.mark.parametrize("window", [7, 20, 64])
@torch.inference_mode()
def test_windowed_equals_one_pass(decoder, window: int, rounded) -> None:
    z, g = _latents(1, 100, seed=window)
    whole = decoder(z, g)
    windowed = decoder.forward_windowed(z, g, None, window, rounded)
    assert windowed.shape == whole.shape
    assert float((windowed - whole).abs().max()) <= 1e-5


@pytest.mark.parametrize("rounded", ROUNDINGS)
@torch.inference_mode()
def test_windowed_keeps_the_padding_masks(decoder, rounded) -> None:
    z, g = _latents(2, 90, seed=3)
    mask = (torch.arange(90) < torch.tensor([[55], [90]])).float().unsqueeze(1)
    z = z * mask
    whole = decoder(z, g, mask)
    windowed = decoder.forward_windowed(z, g, mask, 25, rounded)
    assert float((windowed - whole).abs().max()) <= 1e-5


def test_windows_reuse_their_lengths(decoder) -> None:
    """Inputs of different lengths decode in windows of the same few lengths."""
    lengths = set()
    handle = decoder.register_forward_hook(lambda _m, args, _o: lengths.add(args[0].shape[-1]))
    try:
        with torch.inference_mode():
            for frames in (97, 101, 110):
                decoder.forward_windowed(*_latents(1, frames), None, 30, bucket_length)
    finally:
        handle.remove()
    halo = decoder.receptive_radius()
    # First and middle windows carry context on one and two sides; the last is bucketed.
    assert {30 + halo, 30 + 2 * halo} < lengths
    assert all(length == bucket_length(length) for length in lengths - {30 + halo, 30 + 2 * halo})


def test_short_inputs_take_one_pass(decoder) -> None:
    calls = []
    handle = decoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        with torch.inference_mode():
            decoder.forward_windowed(*_latents(1, 30), None, 30)
            assert len(calls) == 1
            decoder.forward_windowed(*_latents(1, 61), None, 30)
            assert len(calls) == 1 + 3  # 61 frames in three windows of at most 30
    finally:
        handle.remove()


def test_synthesizer_windows_match_one_pass(tiny_checkpoint) -> None:
    whole = MeloSynthesizer.from_checkpoint_dir(tiny_checkpoint, decoder_window=None)
    windowed = MeloSynthesizer.from_checkpoint_dir(tiny_checkpoint, decoder_window=16)
    assert windowed.decoder_window == 16
    items = [make_item(n, rng_seed=n, seed=n, speaker_id=n % 5) for n in (5, 41, 23)]
    expected = whole.synthesize(items)
    assert max(len(a) for a in expected) > 3 * 16 * whole.hop_length, "several windows"
    for a, b in zip(expected, windowed.synthesize(items), strict=True):
        assert max_abs_diff(a, b) <= 1e-4


def test_auto_window_is_for_cpu(tiny_synth: MeloSynthesizer) -> None:
    assert tiny_synth.decoder_window == CPU_DECODER_WINDOW
