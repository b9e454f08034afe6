"""The converter's input: a linear magnitude spectrogram (OpenVoice ``spectrogram_torch``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from harmonyspeech.models.openvoice.hparams import ConverterHParams

MAGNITUDE_FLOOR = 1e-6
"""Added under the square root, as upstream (keeps the gradient finite at zero)."""


def min_samples(hp: ConverterHParams) -> int:
    """Shortest audio the spectrogram accepts (the reflect padding needs this much)."""
    return hp.filter_length


def linear_spectrogram(audio: Tensor, hp: ConverterHParams) -> Tensor:
    """``[N]`` samples at ``hp.sampling_rate`` to a ``[F, N // hop]`` magnitude spectrogram.

    Reflect-padded by ``(n_fft - hop) / 2`` on both sides, periodic Hann window, no centring.
    """
    if audio.numel() < min_samples(hp):
        raise ValueError(f"audio of {audio.numel()} samples is shorter than {min_samples(hp)}")
    pad = (hp.filter_length - hp.hop_length) // 2
    padded = F.pad(audio.view(1, 1, -1), (pad, pad), mode="reflect").view(-1)
    window = torch.hann_window(hp.win_length, dtype=audio.dtype, device=audio.device)
    stft = torch.stft(
        padded,
        hp.filter_length,
        hop_length=hp.hop_length,
        win_length=hp.win_length,
        window=window,
        center=False,
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    return torch.sqrt(stft.real.pow(2) + stft.imag.pow(2) + MAGNITUDE_FLOOR)
