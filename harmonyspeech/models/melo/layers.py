"""Transformer building blocks shared by the text encoder and the flow.

Tensors are ``[B, C, T]`` with a float mask ``[B, 1, T]`` (1 on valid frames). Every block is
batch-exact: a valid frame's output never depends on the padded frames after it, so a padded
batch computes what each item computes alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Upstream fills masked attention scores with -1e4, not -inf: fully masked (padded) query rows
# then get a finite uniform softmax instead of NaN.
_MASKED_SCORE = -1e4


def sequence_mask(lengths: Tensor, max_length: int) -> Tensor:
    """``[B, max_length]`` bool, True before each length."""
    return torch.arange(max_length, device=lengths.device) < lengths.unsqueeze(1)


class ChannelLayerNorm(nn.Module):
    """Layer norm over the channels of ``[B, C, T]``, with ``gamma``/``beta`` parameters."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        y = F.layer_norm(x.transpose(1, -1), self.gamma.shape, self.gamma, self.beta, self.eps)
        return y.transpose(1, -1)


class Flip(nn.Module):
    """Reverses the channel order; a parameter-free flow step (its own inverse)."""

    def forward(self, x: Tensor, *_: object) -> Tensor:
        return torch.flip(x, [1])

    def inverse(self, x: Tensor, *_: object) -> Tensor:
        return torch.flip(x, [1])


@dataclass(frozen=True)
class RelativePositions:
    """The band of key positions within ``±window`` frames of each query.

    Relative terms exist only inside the band, so they are read and written there alone:
    ``2 * window + 1`` cells per query instead of the whole ``[T, T]`` score matrix, and
    without the atomic scatter over ``T * T`` cells that collected them before (most of them
    zeros contending for the two clamped edge slots on a GPU).

    Attributes:
        cells: ``[n]`` int64, flat index ``i * T + j`` of every in-band (query, key) pair.
        slots: ``[n]`` int64, flat index ``i * (2 * window + 1) + (j - i + window)`` of the
            same pairs in a ``[T, 2 * window + 1]`` table of offsets.
        n_offsets: ``2 * window + 1``.
    """

    cells: Tensor
    slots: Tensor
    n_offsets: int

    @classmethod
    def build(cls, length: int, window: int, device: torch.device) -> RelativePositions:
        """Positions for sequences of ``length`` frames.

        Built diagonal by diagonal from ranges known on the host: selecting the in-band pairs
        with a boolean mask would make the host wait for the GPU on every encoder pass.
        """
        n_offsets = 2 * window + 1
        cells, slots = [], []
        for slot in range(n_offsets):
            offset = slot - window  # key j = query i + offset
            first = max(0, -offset)
            query = torch.arange(first, max(first, min(length, length - offset)), device=device)
            cells.append(query * (length + 1) + offset)
            slots.append(query * n_offsets + slot)
        return cls(torch.cat(cells), torch.cat(slots), n_offsets)


class RelativeSelfAttention(nn.Module):
    """Multi-head self-attention with relative position embeddings (Shaw et al.).

    Keys and values get a learned embedding per relative offset ``j - i`` in ``[-w, w]``, shared
    by all heads (``emb_rel_k``/``emb_rel_v``, shape ``[1, 2w + 1, head_dim]``); offsets outside
    the window contribute nothing.
    """

    def __init__(self, channels: int, n_heads: int, window: int = 4):
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = channels // n_heads
        self.window = window
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, channels, 1)
        scale = self.head_dim**-0.5
        self.emb_rel_k = nn.Parameter(torch.randn(1, 2 * window + 1, self.head_dim) * scale)
        self.emb_rel_v = nn.Parameter(torch.randn(1, 2 * window + 1, self.head_dim) * scale)

    def forward(self, x: Tensor, key_mask: Tensor, positions: RelativePositions) -> Tensor:
        """Attend over ``x`` ``[B, C, T]``; ``key_mask`` ``[B, 1, 1, T]`` bool marks valid keys."""
        batch, channels, length = x.shape
        heads = (batch, self.n_heads, self.head_dim, length)
        # The scale goes on the query before both products, as upstream computes it.
        query = self.conv_q(x).view(heads).transpose(2, 3) / math.sqrt(self.head_dim)
        key = self.conv_k(x).view(heads)
        value = self.conv_v(x).view(heads).transpose(2, 3)

        # The same sums as adding a [T, T] matrix of relative logits that is zero off the band.
        scores = (query @ key).view(batch, self.n_heads, length * length)
        rel_logits = (query @ self.emb_rel_k.transpose(1, 2)).flatten(2)
        scores[..., positions.cells] += rel_logits[..., positions.slots]
        scores = scores.view(batch, self.n_heads, length, length)
        probs = scores.masked_fill_(~key_mask, _MASKED_SCORE).softmax(dim=-1)

        rel_probs = probs.new_zeros(batch, self.n_heads, length * positions.n_offsets)
        rel_probs[..., positions.slots] = probs.flatten(2)[..., positions.cells]
        rel_probs = rel_probs.view(batch, self.n_heads, length, positions.n_offsets)
        out = probs @ value + rel_probs @ self.emb_rel_v
        return self.conv_o(out.transpose(2, 3).reshape(batch, channels, length))


class ConvFeedForward(nn.Module):
    """Two "same"-padded convolutions with a ReLU, inputs masked before each."""

    def __init__(self, channels: int, filter_channels: int, kernel_size: int):
        super().__init__()
        self.conv_1 = nn.Conv1d(channels, filter_channels, kernel_size, padding=kernel_size // 2)
        self.conv_2 = nn.Conv1d(filter_channels, channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = torch.relu(self.conv_1(x * mask))
        return self.conv_2(x * mask) * mask


class TransformerEncoder(nn.Module):
    """Post-norm transformer over ``[B, C, T]``, optionally conditioned on a speaker vector.

    The speaker vector ``g`` ``[B, gin, 1]`` is projected by ``spk_emb_linear`` and added to the
    frames before layer ``cond_layer`` (2 in MeloTTS). Window 4 relative attention; dropout is
    inference-inactive and therefore absent.

    Args:
        channels: Model width.
        filter_channels: Feed-forward width.
        n_heads: Attention heads.
        n_layers: Layers.
        kernel_size: Feed-forward convolution taps (3 in the text encoder, 5 in the flow).
        gin_channels: Speaker vector size; 0 for no speaker conditioning.
        cond_layer: Index of the layer the speaker vector is added before.
    """

    def __init__(
        self,
        channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int,
        *,
        gin_channels: int = 0,
        cond_layer: int = 2,
        window: int = 4,
    ):
        super().__init__()
        self.window = window
        self.cond_layer = cond_layer if gin_channels else -1
        if gin_channels:
            self.spk_emb_linear = nn.Linear(gin_channels, channels)
        self.attn_layers = nn.ModuleList(
            RelativeSelfAttention(channels, n_heads, window) for _ in range(n_layers)
        )
        self.norm_layers_1 = nn.ModuleList(ChannelLayerNorm(channels) for _ in range(n_layers))
        self.ffn_layers = nn.ModuleList(
            ConvFeedForward(channels, filter_channels, kernel_size) for _ in range(n_layers)
        )
        self.norm_layers_2 = nn.ModuleList(ChannelLayerNorm(channels) for _ in range(n_layers))

    def forward(self, x: Tensor, mask: Tensor, g: Tensor | None = None) -> Tensor:
        """Encode ``x`` ``[B, C, T]`` under ``mask`` ``[B, 1, T]``; returns masked frames."""
        key_mask = mask.bool().unsqueeze(2)
        positions = RelativePositions.build(x.shape[2], self.window, x.device)
        x = x * mask
        for i, (attn, norm_1, ffn, norm_2) in enumerate(
            zip(
                self.attn_layers,
                self.norm_layers_1,
                self.ffn_layers,
                self.norm_layers_2,
                strict=True,
            )
        ):
            if i == self.cond_layer and g is not None:
                x = (x + self.spk_emb_linear(g.squeeze(-1)).unsqueeze(-1)) * mask
            x = norm_1(x + attn(x, key_mask, positions))
            x = norm_2(x + ffn(x, mask))
        return x * mask
