"""The converter's modules (OpenVoice's ``SynthesizerTrn`` with ``n_speakers = 0``).

Only what the V2 checkpoint holds: the posterior encoder ``enc_q`` on linear spectrograms, the
mean-only WaveNet coupling flow, the HiFi-GAN decoder ``dec`` and the reference encoder
``ref_enc`` that makes tone-colour embeddings. The encoder, flow and decoder are shared with our
MeloTTS runtime, whose masking makes a padded batch equal each item run alone.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harmonyspeech.models.melo.conv import has_legacy_weight_norm, weight_norm_weight
from harmonyspeech.models.melo.generator import build_generator
from harmonyspeech.models.melo.layers import Flip
from harmonyspeech.models.melo.posterior import PosteriorEncoder, WaveNet
from harmonyspeech.models.openvoice.hparams import ConverterHParams

FLOW_LAYERS = 4
"""Coupling layers in the flow (upstream's default ``n_flows``)."""
FLOW_WAVENET_LAYERS = 4
FLOW_KERNEL_SIZE = 5
REFERENCE_FILTERS = (1, 32, 32, 64, 64, 128, 128)
REFERENCE_GRU_CHANNELS = 128


class ResidualCouplingLayer(nn.Module):
    """Mean-only coupling: the second half is shifted by a WaveNet of the first."""

    def __init__(self, channels: int, hidden_channels: int, gin_channels: int):
        super().__init__()
        self.half_channels = channels // 2
        self.pre = nn.Conv1d(self.half_channels, hidden_channels, 1)
        self.enc = WaveNet(hidden_channels, FLOW_KERNEL_SIZE, 1, FLOW_WAVENET_LAYERS, gin_channels)
        self.post = nn.Conv1d(hidden_channels, self.half_channels, 1)

    def _shift(self, x0: Tensor, mask: Tensor, g: Tensor) -> Tensor:
        return self.post(self.enc(self.pre(x0) * mask, mask, g)) * mask

    def forward(self, x: Tensor, mask: Tensor, g: Tensor) -> Tensor:
        x0, x1 = torch.split(x, [self.half_channels] * 2, dim=1)
        return torch.cat([x0, self._shift(x0, mask, g) + x1 * mask], dim=1)

    def inverse(self, x: Tensor, mask: Tensor, g: Tensor) -> Tensor:
        x0, x1 = torch.split(x, [self.half_channels] * 2, dim=1)
        return torch.cat([x0, (x1 - self._shift(x0, mask, g)) * mask], dim=1)


class ResidualCouplingBlock(nn.Module):
    """Coupling layers with channel flips between them (``flows.{0,2,4,6}`` hold weights)."""

    def __init__(self, channels: int, hidden_channels: int, gin_channels: int):
        super().__init__()
        self.flows = nn.ModuleList()
        for _ in range(FLOW_LAYERS):
            self.flows.append(ResidualCouplingLayer(channels, hidden_channels, gin_channels))
            self.flows.append(Flip())

    def forward(self, x: Tensor, mask: Tensor, g: Tensor) -> Tensor:
        for flow in self.flows:
            x = flow(x, mask, g)
        return x

    def inverse(self, x: Tensor, mask: Tensor, g: Tensor) -> Tensor:
        for flow in reversed(self.flows):
            x = flow.inverse(x, mask, g)
        return x


class WeightNormConv2d(nn.Module):
    """3x3, stride-2 convolution stored as legacy weight norm (``weight_g``/``weight_v``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        weight = torch.empty(out_channels, in_channels, 3, 3)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        self.weight_g = nn.Parameter(weight.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
        self.weight_v = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        if has_legacy_weight_norm(self):  # until ``fold_weight_norm`` replaces them
            weight = weight_norm_weight(self.weight_v, self.weight_g)
        else:
            weight = self.weight
        return F.conv2d(x, weight, self.bias, stride=2, padding=1)


class ReferenceEncoder(nn.Module):
    """Spectrogram ``[N, F, T]`` to a tone-colour embedding ``[N, gin]``.

    The GRU's final state summarises the whole input and nothing masks padding, so items of
    different lengths must run one at a time.
    """

    def __init__(self, spec_channels: int, gin_channels: int):
        super().__init__()
        self.layernorm = nn.LayerNorm(spec_channels)
        self.convs = nn.ModuleList(
            WeightNormConv2d(a, b) for a, b in itertools.pairwise(REFERENCE_FILTERS)
        )
        freq = spec_channels
        for _ in self.convs:
            freq = (freq - 1) // 2 + 1
        self.gru = nn.GRU(REFERENCE_FILTERS[-1] * freq, REFERENCE_GRU_CHANNELS, batch_first=True)
        self.proj = nn.Linear(REFERENCE_GRU_CHANNELS, gin_channels)

    def forward(self, spec: Tensor) -> Tensor:
        x = self.layernorm(spec.transpose(1, 2)).unsqueeze(1)  # [N, 1, T, F]
        for conv in self.convs:
            x = F.relu(conv(x))
        x = x.transpose(1, 2).flatten(2)  # [N, T', C * F']
        _, state = self.gru(x)
        return self.proj(state.squeeze(0))


class ConverterNetwork(nn.Module):
    """The four parts of the V2 converter, under the checkpoint's key names."""

    def __init__(self, hp: ConverterHParams):
        super().__init__()
        self.hp = hp
        self.dec = build_generator(hp)
        self.enc_q = PosteriorEncoder(
            hp.spec_channels, hp.inter_channels, hp.hidden_channels, hp.gin_channels
        )
        self.flow = ResidualCouplingBlock(hp.inter_channels, hp.hidden_channels, hp.gin_channels)
        self.ref_enc = ReferenceEncoder(hp.spec_channels, hp.gin_channels)

    def convert(
        self,
        spec: Tensor,
        mask: Tensor,
        source: Tensor,
        target: Tensor,
        noise: Tensor,
        tau: Tensor,
        *,
        padded: bool,
        decoder_window: int | None = None,
    ) -> Tensor:
        """Re-voice a padded batch.

        Args:
            spec: ``[B, F, T]`` linear spectrograms, zero past each item's end.
            mask: ``[B, 1, T]`` frame mask.
            source: ``[B, gin, 1]`` tone colour of the input speech.
            target: ``[B, gin, 1]`` tone colour wanted.
            noise: ``[B, C, T]`` standard normal noise of the posterior sample.
            tau: ``[B]`` posterior noise scale.
            padded: Whether any item is shorter than ``T`` (the decoder then masks).
            decoder_window: Decode in windows of at most this many frames (None: one pass);
                the samples are the same (``Generator.forward_windowed``).

        Returns:
            ``[B, 1, T * hop]`` waveforms, in ``mask``'s dtype.
        """
        # V2 (zero_g) conditions encoder and decoder on a zero vector, not on nothing: their
        # conditioning biases still apply. Identity enters only through the flow.
        zeros = torch.zeros_like(source)
        mean, log_scale = self.enc_q(spec, mask, zeros if self.hp.zero_g else source)
        z = (mean + noise * tau.view(-1, 1, 1) * torch.exp(log_scale)) * mask
        z_hat = self.flow.inverse(self.flow(z, mask, source), mask, target)
        # The decoder may run in a lower precision than the rest (see prepare_converter).
        dtype = self.dec.conv_pre.weight.dtype
        dec_g = (zeros if self.hp.zero_g else target).to(dtype)
        dec_mask = mask.to(dtype) if padded else None
        z_hat = (z_hat * mask).to(dtype)
        if decoder_window is None:
            audio = self.dec(z_hat, dec_g, dec_mask)
        else:
            audio = self.dec.forward_windowed(z_hat, dec_g, dec_mask, decoder_window)
        return audio.to(mask.dtype)

    def embed(self, spec: Tensor) -> Tensor:
        """``[1, F, T]`` spectrogram of one reference piece to its ``[1, gin]`` embedding."""
        return self.ref_enc(spec)
