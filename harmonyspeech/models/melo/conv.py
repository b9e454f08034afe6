"""A 1-D convolution that loads legacy weight-norm checkpoints and runs in two memory layouts.

MeloTTS checkpoints store the HiFi-GAN and WaveNet convolutions with the legacy
``torch.nn.utils.weight_norm``: a direction ``weight_v`` and a magnitude ``weight_g`` per slice
of dim 0. :class:`Conv` keeps exactly those parameter names so the raw state dict loads with
``strict=True``, then :meth:`Conv.fold_weight_norm` replaces them by the plain weight
``g * v / ||v||`` once, instead of recomputing it on every forward as upstream does.

The decoder runs its convolutions as 2-D convolutions over ``[B, C, 1, T]`` tensors in
channels-last memory format: oneDNN convolves that layout about 1.5x faster on CPU than the
default ``[B, C, T]`` one (measured in ``benchmarks/bench_melo_network.py``). :class:`Conv`
accepts both layouts; :meth:`Conv.use_channels_last` stores its weight in the matching format,
and :meth:`Conv.use_spectral` runs wide kernels through the FFT (see ``spectral.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harmonyspeech.models.melo.spectral import BLOCK, SpectralKernel, correlate, spectral_kernel


def weight_norm_weight(weight_v: Tensor, weight_g: Tensor) -> Tensor:
    """The weight that legacy weight norm (``dim=0``) computes from ``v`` and ``g``.

    The norm runs over every dim except dim 0: per output channel for a convolution, per *input*
    channel for a transposed convolution (whose weight is ``[in, out, k]``).
    """
    dims = tuple(range(1, weight_v.dim()))
    return weight_v * (weight_g / torch.linalg.vector_norm(weight_v, dim=dims, keepdim=True))


class Conv(nn.Module):
    """A 1-D convolution or transposed convolution with optional legacy weight norm.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Taps.
        stride: Stride (the upsampling rate for a transposed convolution).
        padding: Zero padding on each side.
        dilation: Dilation.
        groups: Channel groups.
        bias: Whether there is a ``bias`` parameter.
        weight_norm: Store the weight as ``weight_g``/``weight_v`` (legacy weight norm) until
            :meth:`fold_weight_norm` is called.
        transposed: A transposed convolution; its weight is ``[in, out // groups, k]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        weight_norm: bool = False,
        transposed: bool = False,
    ):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        self.transposed = transposed
        if transposed:
            shape = (in_channels, out_channels // groups, kernel_size)
        else:
            shape = (out_channels, in_channels // groups, kernel_size)
        weight = torch.empty(shape)
        fan_in = shape[1] * kernel_size
        nn.init.uniform_(weight, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        if weight_norm:
            self.weight_g = nn.Parameter(weight.flatten(1).norm(dim=1).view(-1, 1, 1))
            self.weight_v = nn.Parameter(weight)
        else:
            self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.spectral: SpectralKernel | None = None

    @property
    def has_weight_norm(self) -> bool:
        """Whether the weight is still stored as ``weight_g``/``weight_v``."""
        return has_legacy_weight_norm(self)

    def effective_weight(self) -> Tensor:
        """The convolution weight, computing it from ``g`` and ``v`` when not folded."""
        if self.has_weight_norm:
            return weight_norm_weight(self.weight_v, self.weight_g)
        return self.weight

    def fold_weight_norm(self) -> None:
        """Replace ``weight_g``/``weight_v`` by the plain weight, computed once in float64."""
        fold_parameters(self)

    @torch.no_grad()
    def use_channels_last(self) -> None:
        """Store the weight as ``[*, *, 1, k]`` in channels-last format for 4-D inputs.

        Requires a folded weight. 3-D inputs still work (the weight is viewed back to 3-D).
        """
        if self.has_weight_norm:
            raise RuntimeError("fold the weight norm before changing the weight layout")
        weight = self.weight if self.weight.dim() == 4 else self.weight.unsqueeze(2)
        weight = weight.contiguous(memory_format=torch.channels_last)
        self.weight = nn.Parameter(weight, requires_grad=False)

    @torch.no_grad()
    def use_spectral(self, block: int = BLOCK) -> None:
        """Convolve channels-last float32 inputs through the FFT from now on.

        Takes a snapshot of the folded weight on its device: call it last, after moving the
        module. Only for stride-1, ungrouped, non-transposed convolutions with "same" padding.
        """
        if self.transposed or self.stride != 1 or self.groups != 1:
            raise ValueError("only stride-1 ungrouped convolutions run through the FFT")
        if self.has_weight_norm:
            raise RuntimeError("fold the weight norm before transforming the weight")
        weight = self.weight.reshape(self.weight.shape[0], self.weight.shape[1], -1)
        if 2 * self.padding != self.dilation * (weight.shape[-1] - 1):
            raise ValueError("only 'same'-padded convolutions run through the FFT")
        self.spectral = spectral_kernel(weight, self.bias, self.dilation, block)

    def forward(self, x: Tensor) -> Tensor:
        """Convolve ``[B, C, T]`` or ``[B, C, 1, T]`` (channels-last) inputs."""
        weight = self.effective_weight()
        if x.dim() == 4:
            return self._forward_2d(x, weight if weight.dim() == 4 else weight.unsqueeze(2))
        if weight.dim() == 4:
            weight = weight.squeeze(2)
        if self.transposed:
            return F.conv_transpose1d(
                x, weight, self.bias, self.stride, self.padding, 0, self.groups, self.dilation
            )
        return F.conv1d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def _forward_2d(self, x: Tensor, weight: Tensor) -> Tensor:
        if self.spectral is not None and x.dtype == torch.float32:
            batch, channels, _, length = x.shape
            out = correlate(x.permute(0, 2, 3, 1).reshape(batch, length, channels), self.spectral)
            return out.view(batch, 1, length, -1).permute(0, 3, 1, 2)
        stride, padding, dilation = (1, self.stride), (0, self.padding), (1, self.dilation)
        if self.transposed:
            return F.conv_transpose2d(
                x, weight, self.bias, stride, padding, 0, self.groups, dilation
            )
        return F.conv2d(x, weight, self.bias, stride, padding, dilation, self.groups)

    def extra_repr(self) -> str:
        kind = "transposed, " if self.transposed else ""
        norm = ", weight_norm" if self.has_weight_norm else ""
        norm += ", spectral" if self.spectral is not None else ""
        shape = tuple(self.effective_weight().shape)
        return f"{kind}weight={shape}, stride={self.stride}, dilation={self.dilation}{norm}"


def has_legacy_weight_norm(module: nn.Module) -> bool:
    """Whether ``module`` holds its own ``weight_g``/``weight_v`` parameters."""
    return "weight_v" in module._parameters and "weight_g" in module._parameters


@torch.no_grad()
def fold_parameters(module: nn.Module) -> None:
    """Replace a module's ``weight_g``/``weight_v`` by the plain ``weight`` (computed once in
    float64); a module without them is left alone."""
    if not has_legacy_weight_norm(module):
        return
    v, g = module.weight_v, module.weight_g
    folded = weight_norm_weight(v.double(), g.double()).to(v.dtype)
    del module.weight_g, module.weight_v
    module.weight = nn.Parameter(folded, requires_grad=False)


def fold_weight_norm(module: nn.Module) -> int:
    """Fold every legacy weight-normed submodule of ``module`` (1-D :class:`Conv` and 2-D
    convolutions alike); returns how many."""
    normed = [m for m in module.modules() if has_legacy_weight_norm(m)]
    for submodule in normed:
        fold_parameters(submodule)
    return len(normed)
