"""The posterior encoder (``enc_q``): linear spectrogram to latent statistics.

Text-to-speech never runs it, but every checkpoint contains it and loads strictly, and it is
what voice conversion would encode reference audio with.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from harmonyspeech.models.melo.conv import Conv

POSTERIOR_KERNEL_SIZE = 5
POSTERIOR_LAYERS = 16
"""Upstream hard-codes these (``n_layers_q`` in the config is ignored)."""


class WaveNet(nn.Module):
    """Non-causal WaveNet stack with gated activations and a global condition (``WN`` upstream)."""

    def __init__(
        self,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        gin_channels: int,
    ):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.n_layers = n_layers
        if gin_channels:
            self.cond_layer = Conv(
                gin_channels, 2 * hidden_channels * n_layers, 1, weight_norm=True
            )
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        for i in range(n_layers):
            dilation = dilation_rate**i
            self.in_layers.append(
                Conv(
                    hidden_channels,
                    2 * hidden_channels,
                    kernel_size,
                    dilation=dilation,
                    padding=(kernel_size * dilation - dilation) // 2,
                    weight_norm=True,
                )
            )
            # The last layer only feeds the skip sum, so it has no residual half.
            out = 2 * hidden_channels if i < n_layers - 1 else hidden_channels
            self.res_skip_layers.append(Conv(hidden_channels, out, 1, weight_norm=True))

    def forward(self, x: Tensor, mask: Tensor, g: Tensor | None = None) -> Tensor:
        hidden = self.hidden_channels
        cond = self.cond_layer(g) if g is not None and hasattr(self, "cond_layer") else None
        output = torch.zeros_like(x)
        for i, (in_layer, res_skip) in enumerate(
            zip(self.in_layers, self.res_skip_layers, strict=True)
        ):
            pre = in_layer(x)
            if cond is not None:
                pre = pre + cond[:, 2 * hidden * i : 2 * hidden * (i + 1)]
            acts = torch.tanh(pre[:, :hidden]) * torch.sigmoid(pre[:, hidden:])
            res_skip_acts = res_skip(acts)
            if i < self.n_layers - 1:
                x = (x + res_skip_acts[:, :hidden]) * mask
                output = output + res_skip_acts[:, hidden:]
            else:
                output = output + res_skip_acts
        return output * mask


class PosteriorEncoder(nn.Module):
    """Spectrogram ``[B, F, T]`` to the posterior's mean and log-scale ``[B, C, T]`` each."""

    def __init__(
        self, in_channels: int, out_channels: int, hidden_channels: int, gin_channels: int
    ):
        super().__init__()
        self.out_channels = out_channels
        self.pre = nn.Conv1d(in_channels, hidden_channels, 1)
        self.enc = WaveNet(
            hidden_channels, POSTERIOR_KERNEL_SIZE, 1, POSTERIOR_LAYERS, gin_channels
        )
        self.proj = nn.Conv1d(hidden_channels, out_channels * 2, 1)

    def forward(self, spec: Tensor, mask: Tensor, g: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Posterior statistics ``(mean, log_scale)``; sample as ``mean + eps * exp(log_scale)``."""
        h = self.enc(self.pre(spec) * mask, mask, g)
        stats = self.proj(h) * mask
        mean, log_scale = torch.split(stats, self.out_channels, dim=1)
        return mean, log_scale
