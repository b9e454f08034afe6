"""OpenVoice V2 adapter: tone-colour embeddings of reference speech, and voice conversion.

Two kinds of work item share one model: ``ToneColorRequest`` (a cloning reference, embedded
alone: the reference encoder cannot mask padding) and ``ConversionRequest`` (a synthesised
sentence re-voiced to a target tone colour; all of a batch's conversions run in one masked
forward pass). Audio arrives at any rate and is resampled to the converter's 22.05 kHz.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from harmonyspeech.audio import Audio
from harmonyspeech.audio.resample import resample
from harmonyspeech.config import OpenVoiceModelConfig
from harmonyspeech.errors import HarmonySpeechError, InvalidRequestError
from harmonyspeech.models.allocator import retain_freed_memory
from harmonyspeech.models.base import (
    ModelAdapter,
    resolve_num_threads,
    set_torch_threads,
    torch_device,
)
from harmonyspeech.models.types import ConversionRequest, ToneColor, ToneColorRequest

logger = logging.getLogger(__name__)

OPENVOICE_REPO_ID = "myshell-ai/OpenVoiceV2"
WorkItem = ToneColorRequest | ConversionRequest


class OpenVoiceAdapter(ModelAdapter[WorkItem, Any]):
    """One converter with the tone colours of its base speakers."""

    config: OpenVoiceModelConfig

    def __init__(self, config: OpenVoiceModelConfig):
        super().__init__(config)
        self._converter: Any = None
        self._base: dict[str, np.ndarray] = {}
        self._facts: dict[str, Any] = {}

    def load(self) -> None:
        set_torch_threads(resolve_num_threads(self.config))
        if torch_device(self.config.device) == "cpu":
            retain_freed_memory()
        from harmonyspeech.models.weights import WeightsNotFoundError, resolve_weights

        speakers = self.config.options.base_speakers
        try:
            path = resolve_weights(
                self.config.weights, weight_files(speakers), default_repo_id=OPENVOICE_REPO_ID
            )
        except WeightsNotFoundError as exc:
            if not self.config.weights.allow_random:
                raise
            self._load_random(exc.message)
            return
        from harmonyspeech.models.openvoice import ToneColorConverter
        from harmonyspeech.models.openvoice.converter import load_base_speakers

        self._converter = ToneColorConverter.from_checkpoint_dir(
            path, device=torch_device(self.config.device), dtype=self.config.dtype
        )
        self._base = load_base_speakers(path, speakers)
        self._facts.update(random_weights=False, checkpoint=str(path))

    def _load_random(self, reason: str) -> None:
        from harmonyspeech.models.openvoice import ToneColorConverter

        size = self.config.options.random_size
        logger.warning(
            "MODEL %r RUNS ON RANDOM WEIGHTS (OpenVoice %s converter): clones are noise (%s)",
            self.config.name,
            size,
            reason,
        )
        self._converter = ToneColorConverter.from_random_weights(
            size, device=torch_device(self.config.device), dtype=self.config.dtype
        )
        generator = np.random.default_rng(0)
        self._base = {
            speaker: (0.1 * generator.standard_normal(self._converter.embedding_size)).astype(
                np.float32
            )
            for speaker in self.config.options.base_speakers
        }
        self._facts["random_weights"] = True

    def describe(self) -> dict[str, Any]:
        from harmonyspeech.models.melo.precision import decoder_dtype_name

        return {
            **self._facts,
            "sample_rate": self._converter.sample_rate if self._converter else None,
            "decoder_dtype": (
                decoder_dtype_name(self._converter.network.dec) if self._converter else None
            ),
            "base_speakers": sorted(self._base),
        }

    def cost(self, item: WorkItem) -> float:
        audio = item.speech if isinstance(item, ToneColorRequest) else item.audio
        return audio.duration

    def infer_batch(self, items: Sequence[WorkItem]) -> list[Any]:
        results: list[Any] = [None] * len(items)
        conversions = []
        for index, item in enumerate(items):
            try:
                if isinstance(item, ToneColorRequest):
                    results[index] = self._embed(item)
                else:
                    conversions.append((index, self._conversion_item(item)))
            except HarmonySpeechError as exc:
                results[index] = exc
        if conversions:
            waves = self._converter.convert([item for _, item in conversions])
            rate = self._converter.sample_rate
            for (index, _), wave in zip(conversions, waves, strict=True):
                results[index] = Audio(wave, rate)
        return results

    @property
    def rate(self) -> int:
        return int(self._converter.sample_rate)

    def _at_model_rate(self, audio: Audio) -> np.ndarray:
        if audio.sample_rate == self.rate:
            return audio.samples
        return resample(audio.samples, audio.sample_rate, self.rate)

    def _embed(self, request: ToneColorRequest) -> ToneColor:
        options = self.config.options
        seconds = request.speech.duration
        if seconds < options.min_speech_s:
            raise InvalidRequestError(
                f"the reference holds {seconds:.1f} s of speech; at least "
                f"{options.min_speech_s:.1f} s is needed",
                param="file",
            )
        samples = self._at_model_rate(request.speech)
        embedding = self._converter.embed(split_pieces(samples, options.piece_s, self.rate))
        return ToneColor(embedding=embedding, speech_seconds=seconds)

    def _conversion_item(self, request: ConversionRequest) -> Any:
        from harmonyspeech.models.openvoice import ConversionItem

        source = self._base.get(request.source_speaker)
        if source is None:
            raise InvalidRequestError(
                f"no tone colour for speaker {request.source_speaker!r}; the converter has "
                f"{', '.join(sorted(self._base)) or 'none'} (options.base_speakers)",
                param="voice",
            )
        samples = self._at_model_rate(request.audio)
        shortest = self._converter.hparams.filter_length
        if samples.size < shortest:
            # The spectrogram's reflect padding needs a window of audio; pad a tiny clip.
            samples = np.pad(samples, (0, shortest - samples.size))
        return ConversionItem(
            audio=samples,
            source=source,
            target=np.asarray(request.target, dtype=np.float32),
            tau=request.tau if request.tau is not None else self.config.options.tau,
            seed=request.seed,
        )


def weight_files(speakers: Sequence[str]) -> list[str]:
    """The files of the V2 repository the adapter needs (hub downloads fetch only these)."""
    from harmonyspeech.models.openvoice.converter import BASE_SPEAKERS_DIR, base_speaker_file

    files = ["converter/config.json", "converter/checkpoint.pth"]
    return files + [str(BASE_SPEAKERS_DIR / base_speaker_file(s)) for s in speakers]


def split_pieces(samples: np.ndarray, piece_s: float, rate: int) -> list[np.ndarray]:
    """Equal pieces of about ``piece_s`` seconds (``round(duration / piece_s)``, at least one),
    as upstream's ``get_se`` cuts the reference speech."""
    count = max(1, round(samples.size / rate / piece_s))
    return [piece for piece in np.array_split(samples, count) if piece.size]
