"""Batched MeloTTS synthesis: sentences in, 44.1 kHz float32 waveforms out.

Usage::

    synth = MeloSynthesizer.from_checkpoint_dir("MeloTTS-English")  # config.json + checkpoint.pth
    items = [SynthesisItem(phones=..., tones=..., languages=..., speaker_id=synth.spk2id["EN-US"],
                           ja_bert=..., length_scale=1 / speed, seed=42), ...]
    waveforms = synth.synthesize(items)  # one float32 array per item, at synth.sample_rate

Items of any lengths share one forward pass, and each waveform equals what the item gives when
run alone (with a seed, bit-for-bit up to float rounding; see ``MeloNetwork.infer``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from harmonyspeech.models.melo.checkpoint import load_network, prepare_network
from harmonyspeech.models.melo.generator import CPU_DECODER_WINDOW
from harmonyspeech.models.melo.hparams import MeloHParams
from harmonyspeech.models.melo.items import BERT_CHANNELS, JA_BERT_CHANNELS, SynthesisItem
from harmonyspeech.models.melo.layers import sequence_mask
from harmonyspeech.models.melo.network import MeloNetwork, NetworkInputs, PerItemNoise
from harmonyspeech.models.melo.precision import resolve_decoder_dtype

GPU_DECODER_GROUP = 64
"""Items the flow and decoder run at once on a GPU by default (``decoder_batch_size``): 1.4-1.7x
the throughput of the whole 256-item batch at once on an H200, in float32 and in float16;
groups of 32 measured the same, of 128 slower (``benchmarks/bench_melo_network.py``)."""


class InvalidItemError(ValueError):
    """A :class:`SynthesisItem` cannot be synthesised by this model (bad ids, shapes, knobs)."""


class MeloSynthesizer:
    """A loaded MeloTTS model that synthesises batches of sentences.

    Build it with :meth:`from_checkpoint_dir` (official files) or :meth:`from_random_weights`
    (the real architecture, untrained). It holds no per-call state; call :meth:`synthesize`
    from one thread at a time (the worker's inference thread) and set torch's thread count in
    the caller.

    Args:
        network: A network prepared with ``prepare_for_inference``.
        hparams: Its hyperparameters.
        decoder_batch_size: Most items the per-frame half (flow and decoder) runs at once;
            ``"auto"``: 1 on CPU (faster there), ``GPU_DECODER_GROUP`` elsewhere. Results
            never depend on it.
        bucket_lengths: Pad lengths to a few fixed sizes so shapes repeat (see
            ``MeloNetwork.infer``); ``"auto"``: on CPU, where every new length costs oneDNN
            new convolution kernels, off elsewhere. Results never depend on it.
        decoder_window: Decode long items in windows of this many frames (see
            ``MeloNetwork.infer``); ``"auto"``: ``CPU_DECODER_WINDOW`` on CPU, where long
            items otherwise spill out of the caches, one pass elsewhere. Results never depend
            on it.

    Attributes:
        network: The prepared torch module.
        hparams: The checkpoint's hyperparameters.
        items_alone: Each item of a batch runs on its own (a half-precision decoder on CPU),
            so that a batch equals its items alone exactly.
    """

    def __init__(
        self,
        network: MeloNetwork,
        hparams: MeloHParams,
        *,
        decoder_batch_size: int | str | None = "auto",
        bucket_lengths: bool | str = "auto",
        decoder_window: int | str | None = "auto",
    ):
        self.network = network
        self.hparams = hparams
        self._device = network.emb_g.weight.device
        on_cpu = self._device.type == "cpu"
        self.bucket_lengths = on_cpu if bucket_lengths == "auto" else bool(bucket_lengths)
        if decoder_batch_size == "auto":
            # Measured: on CPU the flow and decoder are compute-bound and batching only adds
            # padding and cache misses, so they run item by item after the batched front half;
            # on an H200, groups of similar lengths beat one group padded to the longest item.
            decoder_batch_size = 1 if on_cpu else GPU_DECODER_GROUP
        self.decoder_batch_size = decoder_batch_size
        if decoder_window == "auto":
            decoder_window = CPU_DECODER_WINDOW if on_cpu else None
        self.decoder_window = decoder_window
        # A half-precision decoder rounds its input: the front half's batched float32 results
        # differ from an item's alone in the last bits (other matrix shapes), and rounding
        # turned that into up to 5e-3 on waveforms of the real-size network. On CPU, batching
        # gains under 2 % (the decoder runs item by item anyway), so there every item runs
        # whole on its own and a batch equals its items alone, bit for bit.
        self.items_alone = on_cpu and network.dec.conv_pre.weight.dtype != torch.float32

    @classmethod
    def from_checkpoint_dir(
        cls,
        path: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str = torch.float32,
        channels_last: bool | None = None,
        decoder_batch_size: int | str | None = "auto",
        bucket_lengths: bool | str = "auto",
        decoder_window: int | str | None = "auto",
    ) -> MeloSynthesizer:
        """Load ``config.json`` + ``checkpoint.pth`` from a directory.

        Args:
            path: The checkpoint directory.
            device: Torch device.
            dtype: Decoder precision: ``float32``, ``bfloat16``, ``float16`` or ``auto``, the
                fastest that keeps batches exact: bfloat16 on CPUs with native bf16
                (``cpu_has_native_bf16``; each item runs on its own there, see
                ``items_alone``, so a batch equals its items alone), float32 elsewhere.
                Durations are always float32, so only the waveform's rounding changes (by up
                to ~5e-3 in bfloat16, ~7e-4 in float16, measured with the real-size network).
            channels_last: Decoder layout; None: channels-last on CPU and in half precision
                (see ``prepare_network``).
            decoder_batch_size: See the class arguments.
            bucket_lengths: See the class arguments.
            decoder_window: See the class arguments.

        Raises:
            harmonyspeech.errors.ModelLoadError: The files are missing or do not match.
        """
        network, hparams = load_network(
            path,
            device=device,
            decoder_dtype=resolve_decoder_dtype(dtype, device),
            channels_last=channels_last,
        )
        return cls(
            network,
            hparams,
            decoder_batch_size=decoder_batch_size,
            bucket_lengths=bucket_lengths,
            decoder_window=decoder_window,
        )

    @classmethod
    def from_random_weights(
        cls,
        *,
        size: str = "real",
        seed: int = 0,
        speakers: Mapping[str, int] | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str = torch.float32,
    ) -> MeloSynthesizer:
        """The official architecture with sensible random weights (demo mode, no checkpoint).

        See :func:`harmonyspeech.models.melo.fixtures.random_network` for ``size`` and
        ``speakers``.
        """
        from harmonyspeech.models.melo.fixtures import random_network

        network, hparams = random_network(size=size, seed=seed, speakers=speakers)
        prepare_network(network, device, decoder_dtype=resolve_decoder_dtype(dtype, device))
        return cls(network, hparams)

    @property
    def sample_rate(self) -> int:
        """Output sample rate in Hz."""
        return self.hparams.sampling_rate

    @property
    def hop_length(self) -> int:
        """Audio samples per latent frame."""
        return self.hparams.hop_length

    @property
    def symbols(self) -> list[str]:
        """Symbol table: ``symbols[id]``."""
        return list(self.hparams.symbols)

    @property
    def spk2id(self) -> dict[str, int]:
        """Speaker names to ``speaker_id``."""
        return dict(self.hparams.spk2id)

    @property
    def n_speakers(self) -> int:
        """Rows of the speaker table; valid ``speaker_id`` values are below it."""
        return self.network.n_speakers

    def validate(self, item: SynthesisItem) -> None:
        """Check that an item can run. ``synthesize`` checks every item of a batch before it runs
        any, so a bad item costs its batch no model work (an engine worker then runs the batch's
        items one by one, so that it fails alone).

        Raises:
            InvalidItemError: With a message naming the offending field.
        """
        n = item.n_tokens
        if n < 1:
            raise InvalidItemError("phones must be a non-empty 1-D array")
        hp = self.hparams
        for name, limit in (
            ("phones", hp.n_vocab),
            ("tones", hp.num_tones),
            ("languages", hp.num_languages),
        ):
            _check_ids(name, getattr(item, name), n, limit)
        _check_features("bert", item.bert, BERT_CHANNELS, n)
        _check_features("ja_bert", item.ja_bert, JA_BERT_CHANNELS, n)
        if not 0 <= item.speaker_id < self.n_speakers:
            raise InvalidItemError(f"speaker_id {item.speaker_id} not in [0, {self.n_speakers})")
        _check_knobs(item)

    def synthesize(self, items: Sequence[SynthesisItem]) -> list[np.ndarray]:
        """Synthesise a batch of items in one forward pass.

        Args:
            items: Sentences of any lengths, each with its own speaker, knobs and seed.

        Returns:
            One float32 waveform per item, in order, ``frames * hop_length`` samples long.

        Raises:
            InvalidItemError: An item is invalid (see :meth:`validate`); nothing runs.
        """
        if not items:
            return []
        for index, item in enumerate(items):
            try:
                self.validate(item)
            except InvalidItemError as exc:
                raise InvalidItemError(f"item {index}: {exc}") from exc
        seeds = [item.seed if item.seed is not None else _fresh_seed() for item in items]
        if self.items_alone and len(items) > 1:
            return [
                wave
                for item, seed in zip(items, seeds, strict=True)
                for wave in self._run([item], [seed])
            ]
        return self._run(items, seeds)

    def _run(self, items: Sequence[SynthesisItem], seeds: list[int]) -> list[np.ndarray]:
        with torch.inference_mode():
            out = self.network.infer(
                self._collate(items),
                PerItemNoise(seeds, self._device),
                decoder_batch_size=self.decoder_batch_size,
                bucket_lengths=self.bucket_lengths,
                decoder_window=self.decoder_window,
            )
            return _waveforms(out.audio, out.frames * self.hop_length)

    def _collate(self, items: Sequence[SynthesisItem]) -> NetworkInputs:
        lengths = [item.n_tokens for item in items]

        def ids(name: str) -> torch.Tensor:
            out = np.zeros((len(items), max(lengths)), dtype=np.int64)
            for row, item in zip(out, items, strict=True):
                row[: item.n_tokens] = getattr(item, name)
            return self._tensor(out)

        def knob(name: str) -> torch.Tensor:
            values = [float(getattr(item, name)) for item in items]
            return self._tensor(np.asarray(values, dtype=np.float32))

        return NetworkInputs(
            phones=ids("phones"),
            tones=ids("tones"),
            languages=ids("languages"),
            lengths=self._tensor(np.asarray(lengths, dtype=np.int64)),
            speakers=self._tensor(np.asarray([item.speaker_id for item in items], np.int64)),
            bert=self._features(items, "bert", BERT_CHANNELS),
            ja_bert=self._features(items, "ja_bert", JA_BERT_CHANNELS),
            sdp_ratio=knob("sdp_ratio"),
            noise_scale=knob("noise_scale"),
            noise_scale_w=knob("noise_scale_w"),
            length_scale=knob("length_scale"),
        )

    def _features(
        self, items: Sequence[SynthesisItem], name: str, channels: int
    ) -> torch.Tensor | None:
        if all(getattr(item, name) is None for item in items):
            return None
        out = np.zeros((len(items), channels, max(i.n_tokens for i in items)), np.float32)
        for row, item in zip(out, items, strict=True):
            features = getattr(item, name)
            if features is not None:
                row[:, : item.n_tokens] = features
        return self._tensor(out)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(self._device)


def _waveforms(audio: torch.Tensor, lengths: torch.Tensor) -> list[np.ndarray]:
    """Each row of ``audio`` (``[B, T]``) cut to its length, as its own float32 array.

    From a GPU only the valid samples cross the bus, packed into one pinned buffer: a copy of
    the padded batch to pageable memory took 17 % of a 256-item float16 batch on an H200.
    """
    sizes = lengths.tolist()
    if audio.device.type == "cpu":
        host = audio.numpy()
        return [host[row, :size].copy() for row, size in enumerate(sizes)]
    packed = audio[sequence_mask(lengths, audio.shape[1])]
    pinned = torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True)
    flat = pinned.copy_(packed).numpy()
    return [piece.copy() for piece in np.split(flat, np.cumsum(sizes)[:-1])]


def _fresh_seed() -> int:
    return int(torch.seed()) & (2**63 - 1)


def _check_ids(name: str, values: np.ndarray, n: int, limit: int) -> None:
    array = np.asarray(values)
    if array.shape != (n,) or not np.issubdtype(array.dtype, np.integer):
        raise InvalidItemError(f"{name} must be an integer array of shape ({n},)")
    if array.min() < 0 or array.max() >= limit:
        raise InvalidItemError(f"{name} ids must be in [0, {limit})")


def _check_features(name: str, values: np.ndarray | None, channels: int, n: int) -> None:
    if values is None:
        return
    array = np.asarray(values)
    if array.shape != (channels, n):
        raise InvalidItemError(f"{name} must have shape ({channels}, {n}), not {array.shape}")
    if not np.isfinite(array).all():
        raise InvalidItemError(f"{name} has non-finite values")


def _check_knobs(item: SynthesisItem) -> None:
    knobs = {
        "sdp_ratio": (item.sdp_ratio, 0.0, 1.0),
        "noise_scale": (item.noise_scale, 0.0, math.inf),
        "noise_scale_w": (item.noise_scale_w, 0.0, math.inf),
        "length_scale": (item.length_scale, 0.0, math.inf),
    }
    for name, (value, low, high) in knobs.items():
        if not (math.isfinite(value) and low <= value <= high):
            raise InvalidItemError(f"{name}={value} out of range [{low}, {high}]")
    if item.length_scale <= 0:
        raise InvalidItemError("length_scale must be > 0")
    if item.seed is not None and not 0 <= item.seed < 2**63:
        raise InvalidItemError("seed must be in [0, 2**63)")
