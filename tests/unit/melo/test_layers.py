"""Building blocks against direct, slow formulations of their definitions."""

from __future__ import annotations

import math

import pytest
import torch

from harmonyspeech.models.melo.layers import RelativePositions, RelativeSelfAttention
from harmonyspeech.models.melo.network import expand_to_frames, frame_tokens
from harmonyspeech.models.melo.spline import rational_quadratic_spline


def _spline_params(shape, bins: int = 10, seed: int = 0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(*shape, bins, generator=gen, dtype=dtype),
        torch.randn(*shape, bins, generator=gen, dtype=dtype),
        torch.randn(*shape, bins - 1, generator=gen, dtype=dtype),
    )


def test_spline_inverse_undoes_forward() -> None:
    # float64: where the spline is flat its inverse is steep and amplifies float32 rounding.
    x = torch.linspace(-4.99, 4.99, 301, dtype=torch.float64).view(1, 1, -1)
    one_spline = _spline_params((1, 1, 1), dtype=torch.float64)
    params = [p.expand(*x.shape, p.shape[-1]) for p in one_spline]
    y = rational_quadratic_spline(x, *params, inverse=False)
    back = rational_quadratic_spline(y, *params, inverse=True)
    assert torch.allclose(back, x, atol=1e-9)
    assert (y.diff(dim=-1) > 0).all(), "the spline must be monotonic"


def test_spline_is_identity_outside_the_tails_and_continuous_at_them() -> None:
    x = torch.tensor([-50.0, -5.0001, -5.0, 5.0, 5.0001, 50.0])
    params = _spline_params(x.shape, seed=3)
    for inverse in (False, True):
        y = rational_quadratic_spline(x, *params, inverse=inverse)
        assert y[[0, 1, 4, 5]].tolist() == x[[0, 1, 4, 5]].tolist()
        assert torch.allclose(y[[2, 3]], x[[2, 3]], atol=1e-5)


def test_spline_tolerates_garbage_without_raising() -> None:
    x = torch.tensor([float("inf"), -1e30, 0.0, 1e30])
    params = _spline_params(x.shape, seed=4)
    y = rational_quadratic_spline(x, *params, inverse=True)
    assert torch.isfinite(y[1:]).all()


def _naive_attention(attn: RelativeSelfAttention, x: torch.Tensor, valid: int) -> torch.Tensor:
    """Shaw et al. relative attention, one query/key pair at a time (spec section 2)."""
    _, channels, length = x.shape
    heads, dim, window = attn.n_heads, attn.head_dim, attn.window
    q = attn.conv_q(x)[0].view(heads, dim, length)
    k = attn.conv_k(x)[0].view(heads, dim, length)
    v = attn.conv_v(x)[0].view(heads, dim, length)
    e_k, e_v = attn.emb_rel_k[0], attn.emb_rel_v[0]
    out = torch.zeros(heads, dim, length)
    for h in range(heads):
        for i in range(length):
            qi = q[h, :, i] / math.sqrt(dim)
            scores = []
            for j in range(valid):
                rel = qi @ e_k[j - i + window] if abs(j - i) <= window else 0.0
                scores.append(qi @ k[h, :, j] + rel)
            p = torch.softmax(torch.stack([torch.as_tensor(s) for s in scores]), 0)
            for j in range(valid):
                out[h, :, i] += p[j] * v[h, :, j]
                if abs(j - i) <= window:
                    out[h, :, i] += p[j] * e_v[j - i + window]
    return attn.conv_o(out.reshape(1, channels, length))


@torch.no_grad()
@pytest.mark.parametrize(("length", "valid"), [(13, 10), (3, 2), (9, 9)])
def test_relative_attention_matches_its_definition(length: int, valid: int) -> None:
    """Including sequences shorter than the window, whose band is clipped on both sides."""
    torch.manual_seed(0)
    attn = RelativeSelfAttention(channels=8, n_heads=2, window=4)
    x = torch.randn(1, 8, length)
    key_mask = (torch.arange(length) < valid).view(1, 1, 1, length)
    positions = RelativePositions.build(length, 4, x.device)
    fast = attn(x, key_mask, positions)
    slow = _naive_attention(attn, x, valid)
    assert torch.allclose(fast[..., :valid], slow[..., :valid], atol=1e-5)


@torch.no_grad()
def test_relative_attention_in_a_padded_batch_matches_each_item() -> None:
    torch.manual_seed(1)
    attn = RelativeSelfAttention(channels=8, n_heads=2, window=4)
    length, valid = 12, [12, 7, 1]
    x = torch.randn(len(valid), 8, length)
    key_mask = (torch.arange(length) < torch.tensor(valid).view(-1, 1)).view(-1, 1, 1, length)
    batched = attn(x, key_mask, RelativePositions.build(length, 4, x.device))
    for row, n in enumerate(valid):
        slow = _naive_attention(attn, x[row : row + 1], n)
        assert torch.allclose(batched[row, :, :n], slow[0, :, :n], atol=1e-5), f"item {row}"


@pytest.mark.parametrize("durations", [[2, 0, 3, 1], [1, 1, 1, 1], [0, 0, 5, 0]])
def test_frame_tokens_match_the_monotonic_path(durations: list[int]) -> None:
    dur = torch.tensor([durations], dtype=torch.float32)
    n_frames = int(dur.sum())
    tokens = frame_tokens(dur, n_frames)[0].tolist()
    expected = [t for t, d in enumerate(durations) for _ in range(d)]
    assert tokens == expected
    stats = torch.arange(len(durations), dtype=torch.float32).view(1, 1, -1).repeat(1, 3, 1)
    expanded = expand_to_frames(stats, frame_tokens(dur, n_frames))
    assert expanded[0, 0].tolist() == [float(t) for t in expected]
