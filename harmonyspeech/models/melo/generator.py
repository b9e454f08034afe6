"""HiFi-GAN generator (decoder) with frame masks for exact batching.

Upstream runs the generator without masks, so in a padded batch the activations of the padding
(non-zero after ``conv_pre``'s bias and the speaker term) leak into the last frames of shorter
items. Here every convolution sees its input zeroed past the item's end at that stage's
resolution (multiplied by the mask, or for a batch of one, its tail zeroed): zeros past an
item's end reproduce exactly the zero padding the convolution sees when the item runs alone.
That holds for the transposed convolutions too, because an output sample near position
``u * L`` only receives contributions from inputs before ``L``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harmonyspeech.models.melo.conv import Conv
from harmonyspeech.models.melo.layers import sequence_mask
from harmonyspeech.models.melo.spectral import BLOCK, MIN_SPECTRAL_WORK, spectral_pays_off

CPU_DECODER_WINDOW = 512
"""Frames per decoder window on CPU (~6 s of MeloTTS audio). Longer inputs spill the decoder's
activations out of the caches (2 cores, 32 MiB L3): two long sentences (301 and 601 tokens)
measured 1.4-1.6x real time in windows of 1024 frames, 2.0-2.4x in windows of 256-512; inputs of
450-900 frames measured the same in one pass as in windows of 384 or 512 once warm (the
benchmark's real-size decoder; ``python -m benchmarks melo`` has the long-item rows)."""

LRELU_SLOPE = 0.1
# Upstream applies F.leaky_relu with its default slope before conv_post, not LRELU_SLOPE.
FINAL_LRELU_SLOPE = 0.01


class ItemEnds:
    """Where each item of a batch ends, for a mask that only masks tails (every mask the
    network builds): zeroing the tails writes only the padding, where multiplying by the mask
    reads and writes the whole activation before every convolution (16 % of a float16
    256-item batch's GPU time on an H200, in that multiply alone).

    Args:
        lengths: ``[B]`` valid samples per item at this resolution.
    """

    def __init__(self, lengths: Tensor):
        self.lengths = lengths
        self._padding: dict[int, tuple[Tensor, Tensor]] = {}

    def upsampled(self, rate: int) -> ItemEnds:
        return ItemEnds(self.lengths * rate)

    def zero_tails_(self, x: Tensor) -> Tensor:
        """Zero ``x`` (``[B, C, T]`` or ``[B, C, 1, T]``) past each item's end, in place."""
        total = x.shape[-1]
        if total not in self._padding:
            padded = ~sequence_mask(self.lengths, total)
            self._padding[total] = padded.nonzero(as_tuple=True)
        items, samples = self._padding[total]
        if items.numel():
            if x.dim() == 4:
                x[items, :, 0, samples] = 0
            else:
                x[items, :, samples] = 0
        return x


FrameMask = Tensor | ItemEnds | int | None
"""Where the items end at a stage's resolution: a ``[B, 1, T]`` (or ``[B, 1, 1, T]``) 0/1
mask, :class:`ItemEnds` when the mask only masks tails, for a batch of one the number of valid
samples (see :func:`_prefix_length`), or None when nothing is padded."""


def _masked_(x: Tensor, mask: FrameMask) -> Tensor:
    """Zero ``x`` past each item's end, in place: only ever applied to fresh intermediates,
    because the decoder's tensors are big and every extra copy costs memory bandwidth."""
    if mask is None:
        return x
    if isinstance(mask, int):
        x[..., mask:].zero_()
        return x
    if isinstance(mask, ItemEnds):
        return mask.zero_tails_(x)
    return x.mul_(mask)


def _prefix_length(mask: Tensor | None) -> FrameMask:
    """A mask that only masks tails as the items' ends: a batch of one's count of valid
    frames, or :class:`ItemEnds`; any other mask as it is.

    Zeroing the tail touches only the padding (a contiguous block in the channels-last layout),
    where multiplying by the mask reads and writes the whole activation before every
    convolution; on CPU the decoder runs item by item, padded only to a bucketed length.
    """
    if mask is None:
        return mask
    rows = mask.flatten(1)
    valid = (rows != 0).sum(dim=1)
    prefix = sequence_mask(valid, rows.shape[1])
    if not bool((rows == prefix.to(rows.dtype)).all()):
        return mask
    return int(valid[0]) if mask.shape[0] == 1 else ItemEnds(valid)


class ResBlock1(nn.Module):
    """Three residual units ``x += conv2(lrelu(conv1(lrelu(x))))`` with dilated ``conv1``."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            _resblock_conv(channels, kernel_size, dilation) for dilation in dilations
        )
        self.convs2 = nn.ModuleList(_resblock_conv(channels, kernel_size, 1) for _ in dilations)

    def forward(self, x: Tensor, mask: FrameMask, activated: Tensor | None = None) -> Tensor:
        """The block's output, masked; ``x`` itself is left unchanged.

        Args:
            x: ``[B, C, T]`` or channels-last ``[B, C, 1, T]``.
            mask: Where the items end.
            activated: ``x`` through the leaky ReLU and masked, when the caller already has it
                (the parallel blocks of a stage share their input, so one pass over it serves
                all of them).
        """
        for unit, (conv1, conv2) in enumerate(zip(self.convs1, self.convs2, strict=True)):
            if unit > 0 or activated is None:
                activated = _masked_(F.leaky_relu(x, LRELU_SLOPE), mask)
            y = _masked_(F.leaky_relu_(conv1(activated), LRELU_SLOPE), mask)
            x = conv2(y).add_(x)
        return _masked_(x, mask)


def _worth_spectral(conv: Conv, min_work: int) -> bool:
    in_channels, taps = conv.weight.shape[1], conv.kernel_size
    fits = 2 * (taps - 1) < BLOCK
    return conv.weight.dtype == torch.float32 and fits and in_channels * taps >= min_work


def _resblock_conv(channels: int, kernel_size: int, dilation: int) -> Conv:
    padding = (kernel_size * dilation - dilation) // 2
    return Conv(
        channels, channels, kernel_size, padding=padding, dilation=dilation, weight_norm=True
    )


class Generator(nn.Module):
    """Latent frames ``[B, C, T]`` to waveforms ``[B, 1, T * prod(upsample_rates)]``.

    Args:
        in_channels: Latent channels.
        resblock_kernel_sizes: Kernel size of each parallel ResBlock1 per stage.
        resblock_dilation_sizes: Dilations of each ResBlock1.
        upsample_rates: Upsampling factor per stage.
        upsample_initial_channel: Channels before the first stage (halved at each stage).
        upsample_kernel_sizes: Transposed-convolution taps per stage.
        gin_channels: Speaker vector size (0: none).
    """

    def __init__(
        self,
        in_channels: int,
        resblock_kernel_sizes: tuple[int, ...],
        resblock_dilation_sizes: tuple[tuple[int, ...], ...],
        upsample_rates: tuple[int, ...],
        upsample_initial_channel: int,
        upsample_kernel_sizes: tuple[int, ...],
        gin_channels: int,
    ):
        super().__init__()
        self.upsample_rates = tuple(upsample_rates)
        self.n_kernels = len(resblock_kernel_sizes)
        self.channels_last = False
        self.conv_pre = nn.Conv1d(in_channels, upsample_initial_channel, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (rate, kernel) in enumerate(zip(upsample_rates, upsample_kernel_sizes, strict=True)):
            channels = upsample_initial_channel >> (i + 1)
            self.ups.append(
                Conv(
                    upsample_initial_channel >> i,
                    channels,
                    kernel,
                    stride=rate,
                    padding=(kernel - rate) // 2,
                    weight_norm=True,
                    transposed=True,
                )
            )
            for size, dilations in zip(resblock_kernel_sizes, resblock_dilation_sizes, strict=True):
                self.resblocks.append(ResBlock1(channels, size, tuple(dilations)))
        self.conv_post = Conv(channels, 1, 7, padding=3, bias=False)
        self.cond = nn.Conv1d(gin_channels, upsample_initial_channel, 1) if gin_channels else None

    def prepare(self, dtype: torch.dtype, *, channels_last: bool | None = None) -> None:
        """Set the precision and layout for inference; call once, on the decoder's device,
        after folding the weight norm.

        Args:
            dtype: Precision of the decoder.
            channels_last: Run in the channels-last 2-D layout (:meth:`use_channels_last`),
                with the wide float32 convolutions through the FFT on CPUs where that pays off
                (:meth:`use_spectral_convolutions_where_faster`). None: where it measured
                faster, on CPU and in half precision (in float32 on a GPU the default layout
                is faster).
        """
        self.to(dtype)
        if channels_last is None:
            channels_last = self.conv_pre.weight.device.type == "cpu" or dtype != torch.float32
        if channels_last:
            self.use_channels_last()
            self.use_spectral_convolutions_where_faster()

    def use_channels_last(self) -> None:
        """Run the stages as 2-D convolutions in channels-last format (faster with oneDNN).

        Requires folded weight norm.
        """
        for module in (*self.ups, *self.resblocks, self.conv_post):
            for conv in module.modules():
                if isinstance(conv, Conv):
                    conv.use_channels_last()
        self.channels_last = True

    def use_spectral_convolutions(self, min_work: int = MIN_SPECTRAL_WORK) -> int:
        """Run the residual blocks' wide float32 convolutions through the FFT (CPU).

        Requires :meth:`use_channels_last`; a convolution qualifies when its input channels
        times its taps reach ``min_work`` (the measured break-even) and its kernel fits a block.

        Returns:
            How many convolutions now run through the FFT.
        """
        if not self.channels_last:
            raise RuntimeError("spectral convolutions need the channels-last layout")
        chosen = [
            conv
            for block in self.resblocks
            for conv in block.modules()
            if isinstance(conv, Conv) and _worth_spectral(conv, min_work)
        ]
        for conv in chosen:
            conv.use_spectral()
        return len(chosen)

    def use_spectral_convolutions_where_faster(self) -> int:
        """:meth:`use_spectral_convolutions` on a CPU where the FFT path measured faster
        (``spectral_pays_off``); nothing elsewhere. Returns how many convolutions use it."""
        if self.conv_pre.weight.device.type != "cpu" or not spectral_pays_off():
            return 0
        return self.use_spectral_convolutions()

    def forward(self, z: Tensor, g: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """Decode latent frames.

        Args:
            z: ``[B, C, T]`` latent frames, zero past each item's end.
            g: ``[B, gin, 1]`` speaker vectors.
            mask: ``[B, 1, T]`` frame mask, or None when no item is padded (e.g. batch of one).

        Returns:
            ``[B, 1, T * hop]`` waveforms in (-1, 1).
        """
        x = self.conv_pre(z)
        if self.cond is not None and g is not None:
            x = x + self.cond(g)
        if self.channels_last:
            x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
            mask = None if mask is None else mask.unsqueeze(2)
        frames: FrameMask = _prefix_length(mask)
        for i, (up, rate) in enumerate(zip(self.ups, self.upsample_rates, strict=True)):
            x = up(_masked_(F.leaky_relu_(x, LRELU_SLOPE), frames))
            frames = _upsampled(frames, rate)
            x = self._stage(i, x, frames)
        x = self.conv_post(_masked_(F.leaky_relu_(x, FINAL_LRELU_SLOPE), frames))
        x = torch.tanh_(x)
        return x.squeeze(2) if self.channels_last else x

    def forward_windowed(
        self,
        z: Tensor,
        g: Tensor | None,
        mask: Tensor | None,
        window: int,
        rounded: Callable[[int], int] | None = None,
    ) -> Tensor:
        """:meth:`forward` over windows of ``window`` frames (the last one shorter), each
        decoded with :meth:`receptive_radius` frames of context on both sides and cropped to
        its own samples.

        The same samples as one pass (only rounding differs), because no output sample depends
        on frames further away than the radius; but on CPU much faster for long inputs, whose
        activations (16 channels x 512 samples per frame in the last stage) would otherwise
        spill out of the caches (see ``CPU_DECODER_WINDOW``). Every window but those that reach
        the end has one of two lengths, so oneDNN reuses their kernels across inputs; the ones
        that reach the end are zero-padded (and masked) to ``rounded(length)`` frames when
        ``rounded`` is given, for the same reason.
        """
        total = z.shape[-1]
        if total <= window:
            return self(z, g, mask)
        halo = self.receptive_radius()
        hop = math.prod(self.upsample_rates)
        pieces = []
        for start in range(0, total, window):
            stop = min(start + window, total)
            lo, hi = max(0, start - halo), min(total, stop + halo)
            part, part_mask = z[..., lo:hi], None if mask is None else mask[..., lo:hi]
            if rounded is not None and hi == total:
                part, part_mask = _padded(part, part_mask, rounded(hi - lo))
            wave = self(part, g, part_mask)
            pieces.append(wave[..., (start - lo) * hop : (stop - lo) * hop])
        return torch.cat(pieces, dim=-1)

    def receptive_radius(self) -> int:
        """Latent frames on each side of a frame that can influence its samples (a bound).

        Walks the layers back from the output: a "same" convolution adds its padding at its
        own rate, a transposed convolution of stride s and k taps maps r samples to at most
        ``ceil(r / s) + ceil(k / s)`` input samples.
        """
        radius = self.conv_post.padding
        for index in reversed(range(len(self.ups))):
            blocks = self.resblocks[index * self.n_kernels : (index + 1) * self.n_kernels]
            radius += max(
                sum(conv.padding for conv in block.modules() if isinstance(conv, Conv))
                for block in blocks
            )
            up = self.ups[index]
            radius = math.ceil(radius / up.stride) + math.ceil(up.kernel_size / up.stride)
        return radius + self.conv_pre.padding[0]

    def _stage(self, index: int, x: Tensor, mask: FrameMask) -> Tensor:
        blocks = self.resblocks[index * self.n_kernels : (index + 1) * self.n_kernels]
        activated = _masked_(F.leaky_relu(x, LRELU_SLOPE), mask)
        total = blocks[0](x, mask, activated)
        for block in blocks[1:]:
            total.add_(block(x, mask, activated))
        return total.div_(self.n_kernels)


def _padded(z: Tensor, mask: Tensor | None, frames: int) -> tuple[Tensor, Tensor | None]:
    """``z`` and its mask zero-padded to ``frames``."""
    extra = frames - z.shape[-1]
    if extra <= 0:
        return z, mask
    if mask is None:
        mask = z.new_ones(z.shape[0], 1, z.shape[-1])
    return F.pad(z, (0, extra)), F.pad(mask, (0, extra))


def _upsampled(mask: FrameMask, rate: int) -> FrameMask:
    if isinstance(mask, Tensor):
        return mask.repeat_interleave(rate, dim=-1)
    if isinstance(mask, ItemEnds):
        return mask.upsampled(rate)
    return None if mask is None else mask * rate


class DecoderShape(Protocol):
    """The hyperparameters a decoder is built from (MeloTTS's and OpenVoice's configs alike)."""

    inter_channels: int
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    upsample_rates: tuple[int, ...]
    upsample_initial_channel: int
    upsample_kernel_sizes: tuple[int, ...]
    gin_channels: int


def build_generator(hp: DecoderShape) -> Generator:
    """The decoder of a checkpoint's config (``dec`` in both MeloTTS and OpenVoice)."""
    return Generator(
        hp.inter_channels,
        hp.resblock_kernel_sizes,
        hp.resblock_dilation_sizes,
        hp.upsample_rates,
        hp.upsample_initial_channel,
        hp.upsample_kernel_sizes,
        hp.gin_channels,
    )
