"""The MeloTTS network (upstream ``SynthesizerTrn``) with an exact batched inference pass.

The module tree, parameter names and shapes equal the upstream model's, so official
``checkpoint.pth`` state dicts load with ``strict=True``. :meth:`MeloNetwork.infer` differs from
upstream ``infer`` only where batching needs it (DESIGN.md decision 3): every sampling knob is a
per-item tensor, noise comes from each item's own generator at the item's own length, and the
decoder is masked. A padded batch therefore computes what each item computes alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harmonyspeech.models.melo.conv import fold_weight_norm
from harmonyspeech.models.melo.duration import (
    DP_FILTER_CHANNELS,
    DurationPredictor,
    StochasticDurationPredictor,
)
from harmonyspeech.models.melo.flow import TransformerCouplingBlock
from harmonyspeech.models.melo.generator import build_generator
from harmonyspeech.models.melo.hparams import MeloHParams
from harmonyspeech.models.melo.layers import sequence_mask
from harmonyspeech.models.melo.posterior import PosteriorEncoder
from harmonyspeech.models.melo.text_encoder import TextEncoder


class NoiseSource(Protocol):
    """Gaussian noise for a batch, drawn per item at the item's own length."""

    def normal(
        self, channels: int, lengths: Sequence[int], total: int, *, frame_major: bool
    ) -> Tensor:
        """``[B, channels, total]`` float32 noise, zero past each item's length, on any device
        (the network moves it to its own).

        ``frame_major`` draws each item's values in ``[length, channels]`` order (then
        transposes), which is how upstream's ``randn_like`` fills its transposed prior tensor.
        """
        ...


class PerItemNoise:
    """One seeded generator per item, so an item's noise never depends on its batch.

    Each call draws one item's values from its own generator and zero-pads them. The network
    draws the duration noise ``[2, Tx_i]`` first and the prior noise ``[C, Ty_i]`` second, in the
    order, shapes and memory layouts of upstream's two draws. Upstream draws the duration noise
    with ``torch.randn`` on the CPU and the prior noise with ``randn_like`` on the network's
    device, so this does the same: with ``device`` a GPU, the prior noise comes from a CUDA
    generator seeded with the item's seed (drawn value by value on the CPU, the prior noise of
    256 sentences took 0.4 s on two cores, half the GPU time of their whole float16 batch).
    Either way, a seed reproduces upstream's batch-1 noise after ``torch.manual_seed(seed)`` on
    the same device.

    Args:
        seeds: One seed per item.
        device: Where the network runs (default: the CPU).
    """

    def __init__(self, seeds: Sequence[int], device: str | torch.device = "cpu"):
        self._device = torch.device(device)
        self._cpu = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        self._on_device = (
            self._cpu
            if self._device.type == "cpu"
            else [torch.Generator(self._device).manual_seed(int(seed)) for seed in seeds]
        )

    def normal(
        self, channels: int, lengths: Sequence[int], total: int, *, frame_major: bool
    ) -> Tensor:
        if len(lengths) != len(self._cpu):
            raise ValueError(f"{len(lengths)} lengths for {len(self._cpu)} generators")
        device = self._device if frame_major else torch.device("cpu")
        generators = self._on_device if frame_major else self._cpu
        out = torch.zeros(len(lengths), channels, total, device=device)
        for row, generator, length in zip(out, generators, lengths, strict=True):
            if frame_major:
                # A transposed (non-contiguous) tensor, filled in place, as upstream's is:
                # torch fills those element by element, not with its vectorised contiguous path.
                eps = torch.empty(length, channels, device=device).T
                row[:, :length] = eps.normal_(generator=generator)
            else:
                row[:, :length] = torch.randn(channels, length, generator=generator)
        return out


@dataclass(frozen=True)
class NetworkInputs:
    """A padded batch for :meth:`MeloNetwork.infer`, on the network's device.

    Attributes:
        phones: ``[B, Tx]`` int64 symbol ids (padding: any valid id).
        tones: ``[B, Tx]`` int64.
        languages: ``[B, Tx]`` int64.
        lengths: ``[B]`` int64 token counts.
        speakers: ``[B]`` int64 rows of the speaker table.
        bert: ``[B, 1024, Tx]`` float, or None for all zeros.
        ja_bert: ``[B, 768, Tx]`` float, or None for all zeros.
        sdp_ratio: ``[B]`` weight of the stochastic duration predictor (0..1).
        noise_scale: ``[B]`` prior noise scale.
        noise_scale_w: ``[B]`` duration noise scale.
        length_scale: ``[B]`` duration multiplier (1 / speed).
    """

    phones: Tensor
    tones: Tensor
    languages: Tensor
    lengths: Tensor
    speakers: Tensor
    bert: Tensor | None
    ja_bert: Tensor | None
    sdp_ratio: Tensor
    noise_scale: Tensor
    noise_scale_w: Tensor
    length_scale: Tensor


@dataclass(frozen=True)
class NetworkOutput:
    """What :meth:`MeloNetwork.infer` returns.

    Attributes:
        audio: ``[B, Ty * hop]`` waveforms; item ``i`` is valid up to ``frames[i] * hop``.
        frames: ``[B]`` int64 latent frames per item.
        durations: ``[B, Tx]`` int64 frames per token (0 for padding).
    """

    audio: Tensor
    frames: Tensor
    durations: Tensor


class MeloNetwork(nn.Module):
    """The MeloTTS synthesizer network.

    Args:
        hp: Hyperparameters from the checkpoint's ``config.json``.
        n_speakers: Rows of the speaker table (take it from ``emb_g.weight``, not ``spk2id``).
    """

    def __init__(self, hp: MeloHParams, n_speakers: int):
        super().__init__()
        self.hop_length = hp.hop_length
        self.enc_p = TextEncoder(
            hp.n_vocab,
            hp.num_tones,
            hp.num_languages,
            hp.inter_channels,
            hp.hidden_channels,
            hp.filter_channels,
            hp.n_heads,
            hp.n_layers,
            hp.kernel_size,
            hp.encoder_gin_channels,
        )
        self.dec = build_generator(hp)
        self.enc_q = PosteriorEncoder(
            hp.spec_channels, hp.inter_channels, hp.hidden_channels, hp.gin_channels
        )
        self.flow = TransformerCouplingBlock(
            hp.inter_channels,
            hp.hidden_channels,
            hp.filter_channels,
            hp.n_heads,
            hp.n_layers_trans_flow,
            hp.gin_channels,
            n_flows=hp.n_flow_layer,
        )
        self.sdp = StochasticDurationPredictor(hp.hidden_channels, 3, hp.gin_channels)
        self.dp = DurationPredictor(hp.hidden_channels, DP_FILTER_CHANNELS, 3, hp.gin_channels)
        self.emb_g = nn.Embedding(n_speakers, hp.gin_channels)

    @property
    def n_speakers(self) -> int:
        """Rows of the speaker table."""
        return self.emb_g.num_embeddings

    def prepare_for_inference(
        self, *, channels_last: bool | None = None, decoder_dtype: torch.dtype = torch.float32
    ) -> None:
        """Drop the training-only posterior encoder, fold weight norm, freeze parameters and
        pick the decoder's precision and layout; call once, on the network's device, after
        loading the checkpoint.

        Args:
            channels_last: The decoder's layout (see ``Generator.prepare``; None: the one
                measured faster on the device in ``decoder_dtype``).
            decoder_dtype: Precision of the decoder, which dominates the cost. Everything that
                decides durations stays in float32, so item lengths never depend on it.

        The flow stays float32 whatever ``decoder_dtype``: in bfloat16 it made the real-size
        network 4-8 % faster on CPU, but a batch of the tiny test model then differed from its
        items alone by 7.8e-3 (``test_batching.py``; 1e-4 with a float32 flow), most likely as
        the batched text encoder's float32 rounding (a few ulps) flips bfloat16 roundings
        inside the flow.
        """
        # enc_q encodes spectrograms for training (~9 M parameters); inference never runs it.
        del self.enc_q
        fold_weight_norm(self)
        self.eval()
        self.requires_grad_(False)
        self.dec.prepare(decoder_dtype, channels_last=channels_last)

    def infer(
        self,
        inputs: NetworkInputs,
        noise: NoiseSource,
        *,
        decoder_batch_size: int | None = None,
        bucket_lengths: bool = False,
        decoder_window: int | None = None,
    ) -> NetworkOutput:
        """Synthesize a padded batch.

        Args:
            inputs: The batch, on this network's device.
            noise: Per-item Gaussian noise (see :class:`PerItemNoise`).
            decoder_batch_size: Most items the flow and the decoder (the per-frame half) run
                at once (None: all). Items are grouped by length and each group is padded only
                to its own longest item.
                Results do not depend on it; on CPU 1 is fastest (no padding, smaller working
                set), on GPUs the whole batch.
            bucket_lengths: Pad token and frame lengths up to a few fixed sizes (at most
                12.5% more) so that tensor shapes repeat across calls, for shape-keyed kernel
                caches: oneDNN builds its convolution kernels for each input length (a new
                length costs about a sixth of a decoder pass) and keeps the last 1024 (8192
                in our model processes, see ``models/process_env.py``; about 60 per decoder
                length), so without buckets every sentence pays for new kernels on CPU; cuDNN
                autotuning on GPUs. Results do not depend on it.
            decoder_window: Decode longer inputs in windows of at most this many frames (see
                ``Generator.forward_windowed``; None: in one pass). Results do not depend on
                it; on CPU it keeps long sentences from spilling out of the caches.

        Returns:
            Waveforms, frame counts and per-token durations.
        """
        n_tokens = inputs.phones.shape[1]
        rounded = bucket_length if bucket_lengths else _same_length
        inputs = _pad_tokens(inputs, rounded(n_tokens))
        lengths = inputs.lengths
        x_mask = sequence_mask(lengths, inputs.phones.shape[1]).unsqueeze(1).to(self._dtype)
        g = self.emb_g(inputs.speakers).unsqueeze(-1)
        hidden, prior_mean, prior_log_scale = self.enc_p(
            inputs.phones,
            inputs.tones,
            inputs.languages,
            inputs.bert,
            inputs.ja_bert,
            x_mask,
            g,
        )
        logw = self._log_durations(inputs, hidden, x_mask, g, noise)
        w = torch.exp(logw) * x_mask * _per_item(inputs.length_scale)
        durations = torch.ceil(w)
        frames = torch.clamp_min(durations.sum(dim=(1, 2)), 1).long()
        y_mask = sequence_mask(frames, rounded(int(frames.max()))).unsqueeze(1).to(self._dtype)

        token_of_frame = frame_tokens(durations.squeeze(1), y_mask.shape[-1])
        mean = expand_to_frames(prior_mean, token_of_frame) * y_mask
        log_scale = expand_to_frames(prior_log_scale, token_of_frame) * y_mask
        eps = self._noise(noise, mean.shape[1], frames, mean.shape[-1], frame_major=True)
        z_p = mean + eps * torch.exp(log_scale) * _per_item(inputs.noise_scale)

        audio = z_p.new_zeros(z_p.shape[0], z_p.shape[2] * self.hop_length)
        for group in length_groups(frames.tolist(), decoder_batch_size):
            index = torch.tensor(group, device=z_p.device)
            n_frames = rounded(int(frames[index].max()))
            mask = y_mask[index, :, :n_frames]
            # The flow attends over frames (quadratic in length), so it runs per group too,
            # padded only to the group's longest item: padding a short item to a long batch
            # mate's length cost several times its own work on CPU.
            z = self.flow.inverse(z_p[index, :, :n_frames], mask, g[index])
            wave = self._decode(z, g[index], mask, decoder_window, rounded)
            audio[index, : wave.shape[1]] = wave
        return NetworkOutput(audio, frames, durations[:, 0, :n_tokens].long())

    def _decode(
        self,
        z: Tensor,
        g: Tensor,
        y_mask: Tensor,
        window: int | None,
        rounded: Callable[[int], int],
    ) -> Tensor:
        # The decoder may run in a lower precision than the rest (see prepare_for_inference);
        # durations, and so every item's length, are always computed in full precision.
        dtype = self.dec.conv_pre.weight.dtype
        if window is not None and z.shape[-1] > window:
            # Windows get their own padding (see Generator.forward_windowed): decoding the
            # group's bucket padding as well would only add work.
            longest = int(y_mask.sum(dim=-1).max())
            z, y_mask = z[..., :longest], y_mask[..., :longest]
        mask = None if bool(y_mask.all()) else y_mask.to(dtype)
        z, g = (z * y_mask).to(dtype), g.to(dtype)
        if window is None:
            audio = self.dec(z, g, mask)
        else:
            audio = self.dec.forward_windowed(z, g, mask, window, rounded)
        return audio.squeeze(1).float()

    def _log_durations(
        self,
        inputs: NetworkInputs,
        hidden: Tensor,
        x_mask: Tensor,
        g: Tensor,
        noise: NoiseSource,
    ) -> Tensor:
        ratio = _per_item(inputs.sdp_ratio)
        # Drawn even when no item uses the SDP, so that the prior noise that follows from the
        # same generators does not depend on the sdp_ratio of the item or its batch mates.
        sdp_noise = self._noise(noise, 2, inputs.lengths, x_mask.shape[-1], frame_major=False)
        sdp_noise = sdp_noise * _per_item(inputs.noise_scale_w)
        logw = self.dp(hidden, x_mask, g) * (1 - ratio)
        if bool((inputs.sdp_ratio != 0).any()):
            logw = self.sdp.inverse(hidden, x_mask, g, sdp_noise) * ratio + logw
        return logw

    def _noise(
        self, noise: NoiseSource, channels: int, lengths: Tensor, total: int, *, frame_major: bool
    ) -> Tensor:
        eps = noise.normal(channels, lengths.tolist(), total, frame_major=frame_major)
        return eps.to(device=lengths.device, dtype=self._dtype)

    @property
    def _dtype(self) -> torch.dtype:
        return self.emb_g.weight.dtype


def bucket_length(length: int, *, steps_per_octave: int = 8, minimum: int = 16) -> int:
    """``length`` rounded up to one of ``steps_per_octave`` sizes per power of two.

    E.g. 300 -> 320 and 1000 -> 1024: at most 1/steps_per_octave of padding, and only about
    ``8 * log2(max / minimum)`` distinct sizes ever occur.
    """
    if length <= minimum:
        return minimum
    step = max(1, (1 << (length.bit_length() - 1)) // steps_per_octave)
    return -(-length // step) * step


def _same_length(length: int) -> int:
    return length


def _pad_tokens(inputs: NetworkInputs, n_tokens: int) -> NetworkInputs:
    """Zero-pad the token axis to ``n_tokens`` (masked by ``lengths`` downstream)."""
    extra = n_tokens - inputs.phones.shape[1]
    if extra == 0:
        return inputs

    def pad(t: Tensor | None) -> Tensor | None:
        return None if t is None else F.pad(t, (0, extra))

    return replace(
        inputs,
        phones=pad(inputs.phones),
        tones=pad(inputs.tones),
        languages=pad(inputs.languages),
        bert=pad(inputs.bert),
        ja_bert=pad(inputs.ja_bert),
    )


def length_groups(lengths: list[int], size: int | None) -> list[list[int]]:
    """Item indices in groups of at most ``size`` (None: one group), neighbours in length
    grouped together."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    size = max(1, len(order) if size is None else size)
    return [order[start : start + size] for start in range(0, len(order), size)]


def _per_item(values: Tensor) -> Tensor:
    """``[B]`` knob values as ``[B, 1, 1]`` for broadcasting over ``[B, C, T]``."""
    return values.view(-1, 1, 1)


def frame_tokens(durations: Tensor, n_frames: int) -> Tensor:
    """For each output frame, the token it belongs to: ``[B, n_frames]`` int64.

    Token ``t`` covers frames ``[cum[t-1], cum[t])`` of the cumulative durations, which is the
    hard monotonic alignment upstream builds as a ``[Ty, Tx]`` one-hot path. Frames past the
    item's end map to its last token and must be masked by the caller.
    """
    ends = torch.cumsum(durations, dim=-1)
    frame = torch.arange(n_frames, device=durations.device, dtype=ends.dtype)
    token = torch.searchsorted(ends, frame.expand(ends.shape[0], -1).contiguous(), right=True)
    return token.clamp_max(durations.shape[-1] - 1)


def expand_to_frames(stats: Tensor, token_of_frame: Tensor) -> Tensor:
    """Repeat token statistics ``[B, C, Tx]`` over their frames: ``[B, C, Ty]``."""
    index = token_of_frame.unsqueeze(1).expand(-1, stats.shape[1], -1)
    return stats.gather(2, index)
