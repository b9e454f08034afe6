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
    """Where each key sits relative to each query, within a window of ``±window`` frames.

    Attributes:
        index: ``[T, T]`` int64, ``j - i + window`` clamped to ``[0, 2 * window]``.
        in_window: ``[T, T]`` float, 1 where ``|j - i| <= window``.
    """

    index: Tensor
    in_window: Tensor

    @classmethod
    def build(cls, length: int, window: int, device: torch.device, dtype: torch.dtype):
        """Positions for sequences of ``length`` frames."""
        pos = torch.arange(length, device=device)
        offset = pos[None, :] - pos[:, None]
        in_window = (offset.abs() <= window).to(dtype)
        return cls(offset.clamp(-window, window) + window, in_window)


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

        index = positions.index.expand(batch, self.n_heads, length, length)
        rel_logits = query @ self.emb_rel_k.transpose(1, 2)
        scores = query @ key + rel_logits.gather(-1, index) * positions.in_window
        probs = scores.masked_fill(~key_mask, _MASKED_SCORE).softmax(dim=-1)

        # Each (query, offset) pair has at most one key, so the scatter only moves values.
        rel_probs = probs.new_zeros(batch, self.n_heads, length, 2 * self.window + 1)
        rel_probs.scatter_add_(-1, index, probs * positions.in_window)
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
        positions = RelativePositions.build(x.shape[2], self.window, x.device, x.dtype)
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
