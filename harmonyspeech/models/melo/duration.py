"""Duration predictors: the deterministic one and the stochastic (flow-based) one.

Both predict log-durations ``[B, 1, T]`` per token from the text encoder's hidden frames and the
speaker vector; the synthesizer mixes them with each item's ``sdp_ratio``. Only the inverse
(sampling) direction of the stochastic predictor is implemented; its training-only "posterior"
modules exist so that checkpoints load strictly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harmonyspeech.models.melo.layers import ChannelLayerNorm, Flip
from harmonyspeech.models.melo.spline import rational_quadratic_spline

DP_FILTER_CHANNELS = 256
"""Width of the deterministic duration predictor, fixed by the upstream model (not configured)."""


class DurationPredictor(nn.Module):
    """Two masked convolutions with ReLU and layer norm, then a 1x1 projection to log-durations."""

    def __init__(self, in_channels: int, filter_channels: int, kernel_size: int, gin_channels: int):
        super().__init__()
        pad = kernel_size // 2
        self.conv_1 = nn.Conv1d(in_channels, filter_channels, kernel_size, padding=pad)
        self.norm_1 = ChannelLayerNorm(filter_channels)
        self.conv_2 = nn.Conv1d(filter_channels, filter_channels, kernel_size, padding=pad)
        self.norm_2 = ChannelLayerNorm(filter_channels)
        self.proj = nn.Conv1d(filter_channels, 1, 1)
        self.cond = nn.Conv1d(gin_channels, in_channels, 1) if gin_channels else None

    def forward(self, x: Tensor, mask: Tensor, g: Tensor | None) -> Tensor:
        """Log-durations ``[B, 1, T]`` for hidden frames ``x`` ``[B, C, T]``."""
        if self.cond is not None and g is not None:
            x = x + self.cond(g)
        x = self.norm_1(torch.relu(self.conv_1(x * mask)))
        x = self.norm_2(torch.relu(self.conv_2(x * mask)))
        return self.proj(x * mask) * mask


class DDSConv(nn.Module):
    """Dilated depth-separable convolutions (dilation ``kernel_size ** i``) with residuals."""

    def __init__(self, channels: int, kernel_size: int, n_layers: int):
        super().__init__()
        self.convs_sep = nn.ModuleList()
        self.convs_1x1 = nn.ModuleList()
        self.norms_1 = nn.ModuleList()
        self.norms_2 = nn.ModuleList()
        for i in range(n_layers):
            dilation = kernel_size**i
            self.convs_sep.append(
                nn.Conv1d(
                    channels,
                    channels,
                    kernel_size,
                    groups=channels,
                    dilation=dilation,
                    padding=(kernel_size * dilation - dilation) // 2,
                )
            )
            self.convs_1x1.append(nn.Conv1d(channels, channels, 1))
            self.norms_1.append(ChannelLayerNorm(channels))
            self.norms_2.append(ChannelLayerNorm(channels))

    def forward(self, x: Tensor, mask: Tensor, g: Tensor | None = None) -> Tensor:
        if g is not None:
            x = x + g
        for sep, pointwise, norm_1, norm_2 in zip(
            self.convs_sep, self.convs_1x1, self.norms_1, self.norms_2, strict=False
        ):
            y = F.gelu(norm_1(sep(x * mask)))
            x = x + F.gelu(norm_2(pointwise(y)))
        return x * mask


class ElementwiseAffine(nn.Module):
    """``y = m + exp(logs) * x`` per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.m = nn.Parameter(torch.zeros(channels, 1))
        self.logs = nn.Parameter(torch.zeros(channels, 1))

    def inverse(self, y: Tensor, mask: Tensor, _g: Tensor | None = None) -> Tensor:
        return (y - self.m) * torch.exp(-self.logs) * mask


class ConvFlow(nn.Module):
    """Coupling layer whose second half goes through a rational-quadratic spline.

    The first half (unchanged) and the conditioning ``g`` parameterise ``num_bins`` bins per
    frame via a DDSConv stack.
    """

    def __init__(
        self,
        in_channels: int,
        filter_channels: int,
        kernel_size: int,
        n_layers: int,
        num_bins: int = 10,
        tail_bound: float = 5.0,
    ):
        super().__init__()
        self.half_channels = in_channels // 2
        self.filter_channels = filter_channels
        self.num_bins = num_bins
        self.tail_bound = tail_bound
        self.pre = nn.Conv1d(self.half_channels, filter_channels, 1)
        self.convs = DDSConv(filter_channels, kernel_size, n_layers)
        self.proj = nn.Conv1d(filter_channels, self.half_channels * (num_bins * 3 - 1), 1)

    def inverse(self, y: Tensor, mask: Tensor, g: Tensor | None = None) -> Tensor:
        x0, y1 = torch.split(y, [self.half_channels, self.half_channels], dim=1)
        h = self.proj(self.convs(self.pre(x0), mask, g)) * mask
        batch, channels, length = x0.shape
        h = h.reshape(batch, channels, -1, length).permute(0, 1, 3, 2)
        n, scale = self.num_bins, math.sqrt(self.filter_channels)
        x1 = rational_quadratic_spline(
            y1,
            h[..., :n] / scale,
            h[..., n : 2 * n] / scale,
            h[..., 2 * n :],
            inverse=True,
            bound=self.tail_bound,
        )
        return torch.cat([x0, x1], dim=1) * mask


def _flow_stack(channels: int, kernel_size: int, n_flows: int) -> nn.ModuleList:
    flows: list[nn.Module] = [ElementwiseAffine(2)]
    for _ in range(n_flows):
        flows += [ConvFlow(2, channels, kernel_size, n_layers=3), Flip()]
    return nn.ModuleList(flows)


class StochasticDurationPredictor(nn.Module):
    """Flow-based duration sampler (VITS); samples log-durations from Gaussian noise.

    The upstream model forces its filter width to ``in_channels``, so there is no separate one.
    """

    def __init__(self, in_channels: int, kernel_size: int, gin_channels: int, n_flows: int = 4):
        super().__init__()
        channels = in_channels
        self.flows = _flow_stack(channels, kernel_size, n_flows)
        # Training-only posterior modules: present in every checkpoint, never run here.
        self.post_pre = nn.Conv1d(1, channels, 1)
        self.post_proj = nn.Conv1d(channels, channels, 1)
        self.post_convs = DDSConv(channels, kernel_size, n_layers=3)
        self.post_flows = _flow_stack(channels, kernel_size, 4)
        self.pre = nn.Conv1d(in_channels, channels, 1)
        self.proj = nn.Conv1d(channels, channels, 1)
        self.convs = DDSConv(channels, kernel_size, n_layers=3)
        self.cond = nn.Conv1d(gin_channels, channels, 1) if gin_channels else None

    def _sampling_flows(self) -> list[nn.Module]:
        # Sampling runs the flows in reverse and, as upstream does (the checkpoints were trained
        # that way), skips the ConvFlow right after the affine layer: flows.1 is never used.
        flows = list(reversed(self.flows))
        del flows[-2]
        return flows

    def inverse(self, x: Tensor, mask: Tensor, g: Tensor | None, noise: Tensor) -> Tensor:
        """Sample log-durations ``[B, 1, T]``.

        Args:
            x: Hidden frames ``[B, C, T]``.
            mask: ``[B, 1, T]``.
            g: Speaker vectors ``[B, gin, 1]``.
            noise: ``[B, 2, T]`` Gaussian noise, already scaled by each item's ``noise_scale_w``.
        """
        h = self.pre(x)
        if self.cond is not None and g is not None:
            h = h + self.cond(g)
        h = self.proj(self.convs(h, mask)) * mask
        z = noise
        for flow in self._sampling_flows():
            z = flow.inverse(z, mask, h)
        return z[:, :1]
