"""Wide convolutions through the FFT: the same result as the direct convolution, in fewer FLOPs.

On CPU the decoder's direct convolutions already run at the machine's matrix-multiply peak
(measured in ``benchmarks/bench_melo_network.py``), so the only way to run them faster is to do
less arithmetic. A ``k``-tap convolution over ``C_in`` to ``C_out`` channels costs
``2 k C_in C_out`` FLOPs per output sample directly. Overlap-save with blocks of ``N`` samples
turns it into one complex ``C_out x C_in`` product per frequency bin, ``N / 2 + 1`` of them
per ``N - k + 1`` outputs: about ``4 C_in C_out N / (N - k + 1)`` FLOPs per sample (4.6x fewer
than direct for ``k = 11`` and ``N = 64``, 3x for ``k = 7``), plus two FFTs and three copies
that cost per channel, not per channel pair. The matrix products are batched over bins as one
``bmm``, so they run at the same peak; the copies are why narrow layers stay direct.

Dilation is handled by polyphase decomposition: a convolution with dilation ``d`` is ``d``
interleaved undilated convolutions over every ``d``-th sample, so every dilation costs what
``d = 1`` costs and no block wastes room on the kernel's holes. All of it is expressed as a
strided view of one zero-padded copy of the input.

The arithmetic is exact; only the rounding differs from the direct convolution (relative
differences around 1e-6 in float32), far inside the tolerances of DESIGN.md decision 3.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

BLOCK = 64
"""Overlap-save block length; measured best or tied for the decoder's 7- and 11-tap kernels."""

MIN_SPECTRAL_WORK = 896
"""Smallest ``in_channels * kernel_size`` for which the FFT path pays off on CPU (measured on
the decoder's shapes: 256 channels gain 1.4x with 7 taps and 2.2x with 11, 128 channels 1.2x
and 1.7x, 64 channels with 11 taps only break even)."""

SPECTRAL_CPU_CAPABILITIES = frozenset({"AVX2"})
"""The CPUs (``torch.backends.cpu.get_cpu_capability()``) where the FFT path was measured
faster: AVX2 (the figures above, on 2 Zen 3 cores). With AVX-512, whose direct convolutions
do twice the work per instruction, the real-size MeloTTS network ran 6.8-7.0x real time
without the FFT path and 5.7-6.1x with it (2 cores); raising ``MIN_SPECTRAL_WORK`` to keep only
the 256-channel layers measured 6.3-6.6x."""


def spectral_pays_off() -> bool:
    """Whether this CPU runs the decoder's wide convolutions faster through the FFT."""
    return torch.backends.cpu.get_cpu_capability() in SPECTRAL_CPU_CAPABILITIES


@dataclass(frozen=True)
class SpectralKernel:
    """A convolution's weights in the frequency domain, ready for :func:`correlate`.

    Attributes:
        spectra: ``[N // 2 + 1, C_in, C_out]`` complex conjugated FFTs of the zero-padded taps
            (conjugated because torch convolutions are cross-correlations).
        bias: ``[C_out]`` or None.
        kernel_size: Taps.
        dilation: Spacing between taps.
        block: Overlap-save block length ``N``.
    """

    spectra: Tensor
    bias: Tensor | None
    kernel_size: int
    dilation: int
    block: int

    @property
    def out_channels(self) -> int:
        """``C_out``."""
        return self.spectra.shape[-1]


def spectral_kernel(
    weight: Tensor, bias: Tensor | None, dilation: int, block: int = BLOCK
) -> SpectralKernel:
    """Transform a ``[C_out, C_in, k]`` convolution weight once, in float64 for accuracy.

    Raises:
        ValueError: The kernel does not leave at least half the block for outputs.
    """
    out_channels, in_channels, taps = weight.shape
    if 2 * (taps - 1) >= block:
        raise ValueError(f"a {taps}-tap kernel needs blocks longer than {block}")
    padded = weight.new_zeros(out_channels, in_channels, block, dtype=torch.float64)
    padded[..., :taps] = weight
    spectra = torch.fft.rfft(padded).conj().permute(2, 1, 0).to(torch.complex64).contiguous()
    return SpectralKernel(
        spectra=spectra,
        bias=None if bias is None else bias.detach().float().clone(),
        kernel_size=taps,
        dilation=dilation,
        block=block,
    )


def correlate(x: Tensor, kernel: SpectralKernel) -> Tensor:
    """``conv1d(x, weight, bias, padding="same", dilation)`` for time-major ``x``.

    Args:
        x: ``[B, T, C_in]`` float32, contiguous (a channels-last ``[B, C, 1, T]`` tensor permuted).

    Returns:
        ``[B, T, C_out]``, contiguous.
    """
    batch, length, channels = x.shape
    taps, dilation, block = kernel.kernel_size, kernel.dilation, kernel.block
    hop = block - taps + 1
    blocks = _ceil_div(_ceil_div(length, dilation), hop)
    padded_length = dilation * (blocks * hop + taps - 1)
    left = dilation * (taps - 1) // 2
    padded = x.new_zeros(batch, padded_length, channels)
    padded[:, left : left + length] = x
    # Phase p, block j, sample n of the padded input is time p + d * (j * hop + n).
    frames = padded.as_strided(
        (batch, dilation, blocks, block, channels),
        (padded_length * channels, channels, dilation * hop * channels, dilation * channels, 1),
    )
    bins = block // 2 + 1
    spectra = torch.fft.rfft(frames, dim=3).permute(3, 0, 1, 2, 4).reshape(bins, -1, channels)
    products = torch.bmm(spectra, kernel.spectra)
    if kernel.bias is not None:
        # A constant c over the block is c * N in the DC bin: the bias costs no extra pass.
        products[0].add_(kernel.bias, alpha=block)
    outputs = torch.fft.irfft(products, n=block, dim=0)[:hop]
    # The first `hop` samples of each block are the valid ones; put phases back in time order.
    outputs = outputs.view(hop, batch, dilation, blocks, kernel.out_channels)
    timed = outputs.permute(1, 3, 0, 2, 4).reshape(batch, blocks * hop * dilation, -1)
    return timed[:, :length].contiguous()


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)
