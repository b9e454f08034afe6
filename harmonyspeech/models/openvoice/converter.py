"""Loading the V2 converter and running it: tone-colour embeddings and batched conversion.

Files, as in the ``myshell-ai/OpenVoiceV2`` repository: ``converter/config.json``,
``converter/checkpoint.pth`` (a ``torch.save`` dict whose ``"model"`` is the state dict, read
with ``weights_only=True`` and loaded with ``strict=True``) and, per MeloTTS speaker, the
embedding of its voice in ``base_speakers/ses/<speaker>.pth`` (a ``[1, 256, 1]`` tensor; the
name is the speaker lowercased with ``_`` as ``-``: ``EN_INDIA`` -> ``en-india.pth``).
No watermark is added to converted audio.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from harmonyspeech.errors import ModelLoadError
from harmonyspeech.models.melo.checkpoint import read_state_dict
from harmonyspeech.models.melo.conv import fold_weight_norm
from harmonyspeech.models.melo.generator import CPU_DECODER_WINDOW
from harmonyspeech.models.melo.layers import sequence_mask
from harmonyspeech.models.melo.network import bucket_length, length_groups
from harmonyspeech.models.melo.precision import (
    resolve_decoder_dtype,
    use_exact_cuda_convolutions,
)
from harmonyspeech.models.openvoice.hparams import ConverterHParams
from harmonyspeech.models.openvoice.network import ConverterNetwork
from harmonyspeech.models.openvoice.spectrogram import linear_spectrogram

logger = logging.getLogger(__name__)

CONVERTER_DIR = "converter"
BASE_SPEAKERS_DIR = Path("base_speakers") / "ses"
DEFAULT_TAU = 0.3
"""Posterior noise scale of upstream's ``convert``."""


def base_speaker_file(speaker: str) -> str:
    """File name of a MeloTTS speaker's embedding (``EN_INDIA`` -> ``en-india.pth``)."""
    return f"{speaker.lower().replace('_', '-')}.pth"


@dataclass(frozen=True)
class ConversionItem:
    """One utterance to re-voice.

    Attributes:
        audio: Mono float32 samples at the converter's sample rate.
        source: Tone colour of ``audio``'s voice, ``[gin]``.
        target: Tone colour wanted, ``[gin]``.
        tau: Posterior noise scale.
        seed: Fixes the posterior noise; None draws it at random.
    """

    audio: np.ndarray
    source: np.ndarray
    target: np.ndarray
    tau: float = DEFAULT_TAU
    seed: int | None = None


class ToneColorConverter:
    """The prepared network with its hyperparameters; thread-compatible, not thread-safe."""

    def __init__(
        self,
        network: ConverterNetwork,
        hparams: ConverterHParams,
        *,
        batch_size: int | str | None = "auto",
    ):
        self.network = network
        self.hparams = hparams
        self.device = network.dec.conv_pre.weight.device
        if batch_size == "auto":
            # Measured (real size, 2 CPU cores): four mixed-length utterances in one padded
            # pass took 1.85x the time of the four alone, as MeloTTS's decoder on CPU.
            batch_size = 1 if self.device.type == "cpu" else None
        self.batch_size: int | None = batch_size  # type: ignore[assignment]
        # Long utterances decode in windows on CPU, as MeloTTS's (see Generator.forward_windowed).
        self.decoder_window = CPU_DECODER_WINDOW if self.device.type == "cpu" else None
        # Passes padded to a few lengths on CPU, so that oneDNN's per-length convolution kernels
        # are reused across requests (see ``bucket_lengths`` of MeloNetwork.infer).
        self.bucket_lengths = self.device.type == "cpu"

    @property
    def sample_rate(self) -> int:
        return self.hparams.sampling_rate

    @property
    def embedding_size(self) -> int:
        return self.hparams.gin_channels

    @classmethod
    def from_checkpoint_dir(
        cls,
        path: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str = torch.float32,
        batch_size: int | str | None = "auto",
    ) -> ToneColorConverter:
        """Load ``<path>/converter/{config.json,checkpoint.pth}`` (or the files in ``path``).

        ``dtype``: the decoder's precision, ``float32``, ``bfloat16``, ``float16`` or ``auto``
        (``resolve_decoder_dtype``: bfloat16 on CPUs with native bf16, float32 elsewhere);
        the encoder, the flow and the reference encoder stay float32.
        ``batch_size``: most utterances per forward pass; ``"auto"``: 1 on CPU (faster there),
        all on GPU. Results never depend on it.

        Raises:
            ModelLoadError: Missing files, or a state dict that does not match the config.
        """
        folder = Path(path)
        if (folder / CONVERTER_DIR).is_dir():
            folder = folder / CONVERTER_DIR
        hparams = ConverterHParams.from_file(folder / "config.json")
        state = read_state_dict(folder / "checkpoint.pth")
        with torch.device("meta"):
            network = ConverterNetwork(hparams)
        try:
            network.load_state_dict(state, strict=True, assign=True)
        except RuntimeError as exc:
            raise ModelLoadError(f"converter state dict does not match its config: {exc}") from exc
        prepare_converter(network.float(), device, resolve_decoder_dtype(dtype, device))
        logger.info("loaded OpenVoice converter %s (%d Hz)", folder, hparams.sampling_rate)
        return cls(network, hparams, batch_size=batch_size)

    @classmethod
    def from_random_weights(
        cls,
        size: str = "real",
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str = torch.float32,
        batch_size: int | str | None = "auto",
    ) -> ToneColorConverter:
        """A converter of the real (or tiny) architecture with random weights (demo mode);
        ``dtype`` as for :meth:`from_checkpoint_dir`."""
        from harmonyspeech.models.openvoice.fixtures import random_converter

        network = random_converter(size, seed=seed)
        prepare_converter(network, device, resolve_decoder_dtype(dtype, device))
        return cls(network, network.hp, batch_size=batch_size)

    def spectrogram(self, audio: np.ndarray) -> Tensor:
        # A copy: audio that crossed Ray's object store is a read-only view, which torch
        # would share with a warning on every request (and torch takes no negative strides).
        samples = torch.from_numpy(np.array(audio, dtype=np.float32))
        return linear_spectrogram(samples.to(self.device), self.hparams)

    @torch.inference_mode()
    def embed(self, pieces: Sequence[np.ndarray]) -> np.ndarray:
        """The tone colour of a voice: the mean embedding of its reference pieces, ``[gin]``.

        Each piece runs alone (the reference encoder cannot mask padding).
        """
        if not pieces:
            raise ValueError("no reference audio to embed")
        vectors = [self.network.embed(self.spectrogram(p).unsqueeze(0)) for p in pieces]
        return torch.cat(vectors).mean(dim=0).float().cpu().numpy()

    @torch.inference_mode()
    def convert(self, items: Sequence[ConversionItem]) -> list[np.ndarray]:
        """Re-voice many utterances, in forward passes of up to :attr:`batch_size` items of
        similar length; each result equals the item run alone.

        Returns:
            One float32 waveform per item at :attr:`sample_rate`, ``frames * hop`` samples.
        """
        results: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * len(items)
        for group in length_groups([item.audio.size for item in items], self.batch_size):
            for index, wave in zip(group, self._convert([items[i] for i in group]), strict=True):
                results[index] = wave
        return results

    def _convert(self, items: Sequence[ConversionItem]) -> list[np.ndarray]:
        """One padded, masked forward pass."""
        specs = [self.spectrogram(item.audio) for item in items]
        frames = [spec.shape[-1] for spec in specs]
        longest = bucket_length(max(frames)) if self.bucket_lengths else max(frames)
        dtype = next(self.network.enc_q.parameters()).dtype
        batch = torch.zeros(len(items), specs[0].shape[0], longest, device=self.device, dtype=dtype)
        for row, spec in zip(batch, specs, strict=True):
            row[:, : spec.shape[-1]] = spec
        lengths = torch.tensor(frames, device=self.device)
        mask = sequence_mask(lengths, longest).unsqueeze(1).to(dtype)
        audio = self.network.convert(
            batch,
            mask,
            self._vectors(item.source for item in items).to(dtype),
            self._vectors(item.target for item in items).to(dtype),
            self._noise(items, frames, longest).to(dtype),
            torch.tensor([item.tau for item in items], device=self.device, dtype=dtype),
            padded=min(frames) < longest,
            decoder_window=self.decoder_window,
        )
        hop = self.hparams.hop_length
        waves = audio.squeeze(1).float().cpu().numpy()
        return [waves[i, : n * hop].copy() for i, n in enumerate(frames)]

    def _vectors(self, vectors: object) -> Tensor:
        stacked = np.stack([np.asarray(v, dtype=np.float32).reshape(-1) for v in vectors])
        if stacked.shape[1] != self.embedding_size:
            raise ValueError(f"tone colours must have {self.embedding_size} values")
        return torch.from_numpy(stacked).to(self.device).unsqueeze(-1)

    def _noise(self, items: Sequence[ConversionItem], frames: list[int], longest: int) -> Tensor:
        """Per-item noise, so an item's result does not depend on its batch mates."""
        channels = self.hparams.inter_channels
        noise = torch.zeros(len(items), channels, longest)
        for row, item, n in zip(noise, items, frames, strict=True):
            generator = torch.Generator()
            if item.seed is None:
                generator.seed()
            else:
                generator.manual_seed(item.seed)
            row[:, :n] = torch.randn(channels, n, generator=generator)
        return noise.to(self.device)


def prepare_converter(
    network: ConverterNetwork,
    device: str | torch.device,
    decoder_dtype: torch.dtype = torch.float32,
) -> None:
    """Fold weight norm, freeze, move to ``device`` and set the decoder's precision and
    layout (``Generator.prepare``, as MeloTTS's). On CUDA, cuDNN's TF32 convolutions go off,
    so that float32 batches stay exact (``use_exact_cuda_convolutions``)."""
    device = torch.device(device)
    use_exact_cuda_convolutions(device)
    fold_weight_norm(network)
    network.to(device)
    network.eval()
    network.requires_grad_(False)
    network.dec.prepare(decoder_dtype)


def load_base_speakers(path: str | Path, speakers: Sequence[str]) -> dict[str, np.ndarray]:
    """Embeddings of the MeloTTS speakers whose ``base_speakers/ses`` file exists.

    Raises:
        ModelLoadError: A file exists but is not a ``[1, gin, 1]`` tensor.
    """
    folder = Path(path) / BASE_SPEAKERS_DIR
    found = {}
    for speaker in speakers:
        file = folder / base_speaker_file(speaker)
        if not file.is_file():
            continue
        try:
            tensor = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types (pickle, zip, OS errors)
            raise ModelLoadError(f"cannot read speaker embedding {file}: {exc}") from exc
        if not isinstance(tensor, Tensor) or tensor.dim() != 3 or tensor.shape[::2] != (1, 1):
            raise ModelLoadError(f"speaker embedding {file} is not a [1, N, 1] tensor")
        found[speaker] = tensor.reshape(-1).float().numpy()
    return found
