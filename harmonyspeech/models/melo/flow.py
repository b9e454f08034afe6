"""The normalising flow between the prior and the decoder's latent: transformer couplings."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from harmonyspeech.models.melo.layers import Flip, TransformerEncoder

FLOW_KERNEL_SIZE = 5
"""Feed-forward taps inside the coupling transformers, fixed by the upstream model."""


class TransformerCouplingLayer(nn.Module):
    """Mean-only affine coupling: the second half is shifted by a transformer of the first.

    Args:
        channels: Latent channels (split in two halves).
        hidden_channels: Transformer width.
        filter_channels: Transformer feed-forward width.
        n_heads: Attention heads.
        n_layers: Transformer layers.
        gin_channels: Speaker vector size.
    """

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        gin_channels: int,
    ):
        super().__init__()
        self.half_channels = channels // 2
        self.pre = nn.Conv1d(self.half_channels, hidden_channels, 1)
        self.enc = TransformerEncoder(
            hidden_channels,
            filter_channels,
            n_heads,
            n_layers,
            FLOW_KERNEL_SIZE,
            gin_channels=gin_channels,
        )
        self.post = nn.Conv1d(hidden_channels, self.half_channels, 1)

    def _shift(self, x0: Tensor, mask: Tensor, g: Tensor | None) -> Tensor:
        h = self.enc(self.pre(x0) * mask, mask, g)
        return self.post(h) * mask

    def forward(self, x: Tensor, mask: Tensor, g: Tensor | None = None) -> Tensor:
        x0, x1 = torch.split(x, [self.half_channels] * 2, dim=1)
        return torch.cat([x0, self._shift(x0, mask, g) + x1 * mask], dim=1)

    def inverse(self, x: Tensor, mask: Tensor, g: Tensor | None = None) -> Tensor:
        x0, x1 = torch.split(x, [self.half_channels] * 2, dim=1)
        return torch.cat([x0, (x1 - self._shift(x0, mask, g)) * mask], dim=1)


class TransformerCouplingBlock(nn.Module):
    """``n_flows`` coupling layers, each followed by a channel flip."""

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        gin_channels: int,
        n_flows: int = 4,
    ):
        super().__init__()
        self.flows = nn.ModuleList()
        for _ in range(n_flows):
            self.flows.append(
                TransformerCouplingLayer(
                    channels, hidden_channels, filter_channels, n_heads, n_layers, gin_channels
                )
            )
            self.flows.append(Flip())

    def forward(self, x: Tensor, mask: Tensor, g: Tensor | None = None) -> Tensor:
        """Latent to prior space (used by voice conversion)."""
        for flow in self.flows:
            x = flow(x, mask, g)
        return x

    def inverse(self, z: Tensor, mask: Tensor, g: Tensor | None = None) -> Tensor:
        """Prior sample to the decoder's latent (used by synthesis)."""
        for flow in reversed(self.flows):
            z = flow.inverse(z, mask, g)
        return z
