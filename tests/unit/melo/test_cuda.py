"""The MeloTTS runtime on a CUDA GPU: exact batching, and upstream's noise and output there.

CI has no GPU, so these skip there; they run where torch sees one (the benchmark machine).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from harmonyspeech.models.melo import MeloSynthesizer
from harmonyspeech.models.melo.network import PerItemNoise
from tests.unit.melo.fetch_reference import (
    DEFAULT_DEST,
    is_fetched,
    reference_infer,
    reference_network,
)
from tests.unit.melo.helpers import make_item, max_abs_diff

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TOLERANCE = 1e-4
HALF_TOLERANCE = {"float16": 2e-3, "bfloat16": 1e-2}
"""Half-precision decoders round differently per batch shape (bfloat16 keeps 3 mantissa bits
fewer than float16); lengths never move, as durations are always float32."""
TOKENS = (9, 57, 23, 101, 41, 15)


def _items(**noise: float) -> list:
    return [
        make_item(n, rng_seed=i, seed=300 + i, sdp_ratio=0.2 * (i % 3), speaker_id=i % 4, **noise)
        for i, n in enumerate(TOKENS)
    ]


@pytest.mark.parametrize(
    ("options", "tolerance"),
    [
        (dict(), TOLERANCE),
        (dict(decoder_batch_size=2), TOLERANCE),
        (dict(decoder_batch_size=None), TOLERANCE),
        (dict(dtype="float16"), HALF_TOLERANCE["float16"]),
        (dict(dtype="bfloat16"), HALF_TOLERANCE["bfloat16"]),
    ],
    ids=["default", "groups-of-2", "whole-batch", "float16", "bfloat16"],
)
@pytest.mark.parametrize(
    "noise",
    [dict(noise_scale=0.0, noise_scale_w=0.0), dict(noise_scale=0.667, noise_scale_w=0.8)],
    ids=["no-noise", "seeded"],
)
def test_batch_equals_items_run_alone_on_cuda(
    tiny_checkpoint: Path, options: dict, tolerance: float, noise: dict
) -> None:
    synth = MeloSynthesizer.from_checkpoint_dir(tiny_checkpoint, device="cuda", **options)
    items = _items(**noise)
    batched = synth.synthesize(items)
    alone = [synth.synthesize([item])[0] for item in items]
    assert len({len(audio) for audio in batched}) > 3
    for index, (b, a) in enumerate(zip(batched, alone, strict=True)):
        assert max_abs_diff(b, a) <= tolerance, f"item {index}"
        assert np.abs(b).max() > 1e-3, f"item {index} is silent"


def test_half_precision_stays_near_float32_on_cuda(tiny_checkpoint: Path) -> None:
    items = _items(noise_scale=0.667, noise_scale_w=0.8)
    exact = MeloSynthesizer.from_checkpoint_dir(tiny_checkpoint, device="cuda").synthesize(items)
    for dtype, tolerance in HALF_TOLERANCE.items():
        synth = MeloSynthesizer.from_checkpoint_dir(tiny_checkpoint, device="cuda", dtype=dtype)
        for index, (half, full) in enumerate(zip(synth.synthesize(items), exact, strict=True)):
            assert max_abs_diff(half, full) <= tolerance, f"{dtype} item {index}"


def test_prior_noise_is_drawn_as_upstream_draws_it_on_cuda() -> None:
    """Upstream fills ``randn_like`` of its transposed ``[1, C, Ty]`` prior on the GPU after
    ``torch.manual_seed(seed)``; the per-item CUDA generators draw the same values."""
    seeds, lengths, channels = [5, 11], [30, 17], 8
    noise = PerItemNoise(seeds, "cuda").normal(channels, lengths, 30, frame_major=True)
    assert noise.device.type == "cuda"
    for row, seed, length in zip(noise, seeds, lengths, strict=True):
        torch.manual_seed(seed)
        prior = torch.empty(1, length, channels, device="cuda").transpose(1, 2)
        expected = torch.randn_like(prior)[0]
        assert torch.equal(row[:, :length], expected)
        assert not row[:, length:].any()


def test_matches_upstream_network_on_cuda(tiny_checkpoint: Path) -> None:
    if not is_fetched(DEFAULT_DEST):
        pytest.skip(f"upstream MeloTTS not in {DEFAULT_DEST}")
    upstream = reference_network(tiny_checkpoint).to("cuda")
    synth = MeloSynthesizer.from_checkpoint_dir(tiny_checkpoint, device="cuda")
    for knobs in (dict(noise_scale=0.0, noise_scale_w=0.0), dict()):
        item = make_item(23, rng_seed=7, seed=1234, sdp_ratio=0.5, **knobs)
        with torch.no_grad():
            expected = reference_infer(upstream, item, "cuda")
        assert max_abs_diff(synth.synthesize([item])[0], expected) <= TOLERANCE, knobs
