"""Batched synthesis equals per-item synthesis (DESIGN.md decision 3)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from harmonyspeech.models.melo import InvalidItemError, MeloSynthesizer
from harmonyspeech.models.melo.generator import ItemEnds, _masked_, _prefix_length, _upsampled
from harmonyspeech.models.melo.network import PerItemNoise
from tests.unit.melo.helpers import make_item, max_abs_diff

TOLERANCE = 1e-4

# Very different lengths and per-item knobs: speaker, speed, duration-predictor mix.
_BATCH = [
    dict(n=3, speaker_id=0, length_scale=1.0, sdp_ratio=0.0),
    dict(n=41, speaker_id=1, length_scale=0.7, sdp_ratio=0.2),
    dict(n=9, speaker_id=2, length_scale=1.4, sdp_ratio=1.0),
    dict(n=27, speaker_id=3, length_scale=1.0, sdp_ratio=0.5),
    dict(n=15, speaker_id=4, length_scale=0.9, sdp_ratio=0.0),
    dict(n=33, speaker_id=7, length_scale=1.2, sdp_ratio=0.8),
]


def _items(**noise: float):
    return [
        make_item(spec["n"], rng_seed=i, seed=100 + i, **noise, **_knobs(spec))
        for i, spec in enumerate(_BATCH)
    ]


def _knobs(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if k != "n"}


NO_NOISE = dict(noise_scale=0.0, noise_scale_w=0.0)
SEEDED_NOISE = dict(noise_scale=0.667, noise_scale_w=0.8)


@pytest.mark.parametrize(
    ("options", "noise"),
    [
        pytest.param(dict(decoder_batch_size=None), NO_NOISE, id="decode-all-masked-no-noise"),
        pytest.param(dict(decoder_batch_size=None), SEEDED_NOISE, id="decode-all-masked-seeded"),
        pytest.param(dict(decoder_batch_size=1), SEEDED_NOISE, id="decode-each-seeded"),
        pytest.param(
            dict(decoder_batch_size=2, bucket_lengths=True), SEEDED_NOISE, id="by-2-bucketed"
        ),
        pytest.param(dict(dtype="bfloat16"), SEEDED_NOISE, id="bfloat16-decoder-seeded"),
    ],
)
def test_batch_equals_items_run_alone(tiny_checkpoint: Path, options: dict, noise: dict) -> None:
    synth = MeloSynthesizer.from_checkpoint_dir(tiny_checkpoint, **options)
    items = _items(**noise)
    batched = synth.synthesize(items)
    alone = [synth.synthesize([item])[0] for item in items]
    lengths = {len(audio) for audio in batched}
    assert len(lengths) > 3, "the batch should mix very different output lengths"
    for index, (b, a) in enumerate(zip(batched, alone, strict=True)):
        assert b.dtype == np.float32
        assert len(b) % synth.hop_length == 0
        assert max_abs_diff(b, a) <= TOLERANCE, f"item {index}"
        assert np.abs(b).max() > 1e-3, f"item {index} is silent"
        if synth.items_alone:
            # A half-precision decoder on CPU: exact, or its rounding magnifies the front
            # half's last-bit differences (5e-3 at the real size).
            assert np.array_equal(b, a), f"item {index}"


@torch.inference_mode()
def test_decoder_masks_stop_the_padding_leak(tiny_synth: MeloSynthesizer) -> None:
    """Unmasked, a padded batch leaks into the short item's end; masked, it matches exactly."""
    decoder = tiny_synth.network.dec
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2, 16, 40, generator=gen)
    g = torch.randn(2, 16, 1, generator=gen)
    mask = (torch.arange(40) < torch.tensor([[25], [40]])).float().unsqueeze(1)
    z = z * mask
    alone = decoder(z[:1, :, :25], g[:1])[0, 0]
    masked = decoder(z, g, mask)[0, 0, : alone.shape[0]]
    unmasked = decoder(z, g)[0, 0, : alone.shape[0]]
    assert (masked - alone).abs().max() <= 1e-5
    assert (unmasked - alone).abs().max() > 1e-3


@torch.inference_mode()
def test_padded_item_alone_equals_unpadded(tiny_synth: MeloSynthesizer) -> None:
    """A batch of one padded to a bucket (its tail zeroed, not multiplied by the mask) decodes
    exactly as the unpadded item, and as the same item masked in a batch of two."""
    decoder = tiny_synth.network.dec
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(1, 16, 25, generator=gen)
    g = torch.randn(1, 16, 1, generator=gen)
    padded = torch.nn.functional.pad(z, (0, 15))
    mask = (torch.arange(40) < 25).float().view(1, 1, -1)
    alone = decoder(z, g)[0, 0]
    tail_zeroed = decoder(padded, g, mask)[0, 0]
    pair_mask = torch.cat([mask, torch.ones_like(mask)])
    multiplied = decoder(padded.repeat(2, 1, 1), g.repeat(2, 1, 1), pair_mask)[0, 0]
    assert (tail_zeroed[: alone.shape[0]] - alone).abs().max() <= 1e-5
    assert (multiplied[: alone.shape[0]] - alone).abs().max() <= 1e-5


@pytest.mark.parametrize("noise", [NO_NOISE, SEEDED_NOISE], ids=["no-noise", "seeded"])
def test_bucketed_lengths_equal_exact_lengths(tiny_checkpoint: Path, noise: dict) -> None:
    """Bucketing (the CPU default) pads tokens and frames; no sample may change."""
    bucketed = MeloSynthesizer.from_checkpoint_dir(tiny_checkpoint)
    exact = MeloSynthesizer.from_checkpoint_dir(tiny_checkpoint, bucket_lengths=False)
    assert bucketed.bucket_lengths and not exact.bucket_lengths
    items = _items(**noise)
    outputs = [*bucketed.synthesize(items), *(bucketed.synthesize([i])[0] for i in items)]
    expected = exact.synthesize(items) * 2
    for index, (b, e) in enumerate(zip(outputs, expected, strict=True)):
        assert max_abs_diff(b, e) <= TOLERANCE, f"output {index}"


def test_output_length_is_frames_times_hop(tiny_synth: MeloSynthesizer) -> None:
    items = _items(noise_scale=0.5, noise_scale_w=0.5)
    with torch.inference_mode():
        out = tiny_synth.network.infer(tiny_synth._collate(items), PerItemNoise([1] * 6))
    frames = out.frames.tolist()
    durations = out.durations.sum(dim=1).tolist()
    assert frames == [max(1, d) for d in durations]
    audio = tiny_synth.synthesize([_with_seed(item, 1) for item in items])
    assert [len(a) for a in audio] == [f * tiny_synth.hop_length for f in frames]


def _with_seed(item, seed: int):
    return replace(item, seed=seed)


def test_batch_order_does_not_matter(tiny_synth: MeloSynthesizer) -> None:
    items = _items(noise_scale=0.6, noise_scale_w=0.8)[:4]
    forward = tiny_synth.synthesize(items)
    backward = tiny_synth.synthesize(items[::-1])[::-1]
    for f, b in zip(forward, backward, strict=True):
        assert max_abs_diff(f, b) <= TOLERANCE


def test_seed_reproduces_and_differs(tiny_synth: MeloSynthesizer) -> None:
    first = tiny_synth.synthesize([make_item(11, seed=5)])[0]
    again = tiny_synth.synthesize([make_item(11, seed=5)])[0]
    other = tiny_synth.synthesize([make_item(11, seed=6)])[0]
    assert np.array_equal(first, again)
    assert len(first) != len(other) or not np.allclose(first, other)


def test_speed_changes_length(tiny_synth: MeloSynthesizer) -> None:
    quiet = dict(noise_scale=0.0, noise_scale_w=0.0, sdp_ratio=0.0)
    slow, normal = tiny_synth.synthesize(
        [make_item(21, length_scale=2.0, **quiet), make_item(21, length_scale=1.0, **quiet)]
    )
    assert len(slow) > 1.5 * len(normal)


def test_empty_batch(tiny_synth: MeloSynthesizer) -> None:
    assert tiny_synth.synthesize([]) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(speaker_id=99), "speaker_id"),
        (dict(sdp_ratio=1.5), "sdp_ratio"),
        (dict(length_scale=0.0), "length_scale"),
        (dict(noise_scale=float("nan")), "noise_scale"),
        (dict(phones=np.array([1, 2, 999])), "phones"),
        (dict(tones=np.array([0, 1])), "tones"),
        (dict(ja_bert=np.zeros((768, 2), np.float32)), "ja_bert"),
        (dict(seed=-1), "seed"),
    ],
)
def test_invalid_items_are_rejected(tiny_synth: MeloSynthesizer, change, message) -> None:
    item = replace(make_item(3), **change)
    with pytest.raises(InvalidItemError, match=message):
        tiny_synth.validate(item)
    with pytest.raises(InvalidItemError, match="item 1"):
        tiny_synth.synthesize([make_item(3), item])


@pytest.mark.parametrize("layout", ["channels-first", "channels-last"])
def test_zeroing_item_tails_equals_multiplying_by_the_mask(layout: str) -> None:
    x = torch.randn(3, 4, 10, generator=torch.Generator().manual_seed(2))
    mask = (torch.arange(10) < torch.tensor([[10], [6], [1]])).float().unsqueeze(1)
    if layout == "channels-last":
        x, mask = x.unsqueeze(2).contiguous(memory_format=torch.channels_last), mask.unsqueeze(2)
    ends = _prefix_length(mask)
    assert isinstance(ends, ItemEnds) and ends.lengths.tolist() == [10, 6, 1]
    assert torch.equal(_masked_(x.clone(), ends), x * mask)
    upsampled = _upsampled(ends, 3)
    wide = x.repeat_interleave(3, dim=-1)
    assert torch.equal(_masked_(wide.clone(), upsampled), wide * mask.repeat_interleave(3, -1))


def test_a_mask_with_holes_is_multiplied() -> None:
    mask = torch.tensor([[[1.0, 0.0, 1.0, 0.0]], [[1.0, 1.0, 0.0, 0.0]]])
    assert _prefix_length(mask) is mask
    assert _prefix_length(mask[1:]) == 2


def test_a_real_size_half_precision_decoder_on_cpu_keeps_batches_exact() -> None:
    # At the tiny size the front half's batched and lone results happen to agree; at the real
    # size they differ in the last bits, and the bfloat16 decoder made that up to 5e-3.
    synth = MeloSynthesizer.from_random_weights(size="real", seed=0, dtype="bfloat16")
    assert synth.items_alone
    items = [make_item(n, rng_seed=i, seed=100 + i) for i, n in enumerate([21, 61, 35, 47])]
    batched = synth.synthesize(items)
    for index, item in enumerate(items):
        assert np.array_equal(batched[index], synth.synthesize([item])[0]), f"item {index}"
