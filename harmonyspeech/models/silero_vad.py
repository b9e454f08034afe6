"""Silero VAD, batched across streams.

The weights ship inside the ``silero-vad`` wheel, so this family needs no download. The model
takes ``(B, window)`` frames and keeps its recurrent state per row, so B streams advance in
lock-step through one forward call per frame; shorter streams are zero-padded at the end, which
cannot affect their own (earlier) frames, so a batched result equals the stream run alone.
Per-stream probabilities are turned into segments by the library's own
``get_speech_timestamps_from_probs``, the same post-processing as ``get_speech_timestamps``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from harmonyspeech.audio import resample
from harmonyspeech.config import SileroVadModelConfig, SileroVadOptions
from harmonyspeech.errors import InvalidRequestError
from harmonyspeech.models.base import ModelAdapter, resolve_num_threads, set_torch_threads
from harmonyspeech.models.types import SpeechSegment, VadParams, VadRequest, VadResult

WINDOW_SAMPLES = {16000: 512, 8000: 256}


class SileroVadAdapter(ModelAdapter[VadRequest, VadResult]):
    """Speech segments for many streams per forward pass."""

    config: SileroVadModelConfig

    def __init__(self, config: SileroVadModelConfig):
        super().__init__(config)
        self._model: Any = None
        self._to_timestamps: Any = None

    @property
    def sample_rate(self) -> int:
        return self.config.options.sampling_rate

    def load(self) -> None:
        import silero_vad
        from silero_vad.utils_vad import get_speech_timestamps_from_probs

        # Importing silero_vad forces torch to one thread; restore the configured count.
        set_torch_threads(resolve_num_threads(self.config))
        self._model = silero_vad.load_silero_vad()
        self._to_timestamps = get_speech_timestamps_from_probs

    def cost(self, item: VadRequest) -> float:
        # Audio seconds: every stream in a batch advances to the longest one's end.
        return len(item.audio) / item.sample_rate

    def infer_batch(self, items: Sequence[VadRequest]) -> list[VadResult | Exception]:
        results: list[VadResult | Exception | None] = [self._check(item) for item in items]
        runnable = [i for i, r in enumerate(results) if r is None]
        streams = [self._at_model_rate(items[i]) for i in runnable]
        probs = self.frame_probabilities(streams)
        for index, stream, stream_probs in zip(runnable, streams, probs, strict=True):
            results[index] = self._segments(items[index].params, stream, stream_probs)
        return results  # type: ignore[return-value]

    def _at_model_rate(self, item: VadRequest) -> np.ndarray:
        audio = resample(item.audio, item.sample_rate, self.sample_rate)
        return np.ascontiguousarray(audio, dtype=np.float32)

    def frame_probabilities(self, streams: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Speech probability of every window of every stream, computed in lock-step."""
        import torch

        if not streams:
            return []
        window = WINDOW_SAMPLES[self.sample_rate]
        frames = [-(-len(s) // window) for s in streams]
        padded = np.zeros((len(streams), max(frames) * window), dtype=np.float32)
        for row, stream in enumerate(streams):
            padded[row, : len(stream)] = stream
        out = np.empty((len(streams), max(frames)), dtype=np.float32)
        with torch.inference_mode():
            self._model.reset_states()
            tensor = torch.from_numpy(padded)
            for f in range(max(frames)):
                chunk = tensor[:, f * window : (f + 1) * window]
                out[:, f] = self._model(chunk, self.sample_rate)[:, 0].numpy()
        return [out[row, : frames[row]] for row in range(len(streams))]

    def _check(self, item: VadRequest) -> InvalidRequestError | None:
        if item.audio.ndim != 1 or len(item.audio) == 0:
            return InvalidRequestError("VAD expects a non-empty mono stream", param="file")
        options = effective_options(self.config.options, item.params)
        if options.neg_threshold is not None and options.neg_threshold > options.threshold:
            # Speech ends below neg_threshold once it started above threshold: above it, each
            # frame between the two would start speech and end it again.
            return InvalidRequestError(
                f"neg_threshold ({options.neg_threshold}) must not be above threshold "
                f"({options.threshold})",
                param="neg_threshold",
            )
        return None

    def _segments(self, params: VadParams, stream: np.ndarray, probs: np.ndarray) -> VadResult:
        options = effective_options(self.config.options, params)
        max_speech = options.max_speech_duration_s
        raw = self._to_timestamps(
            probs.tolist(),
            sampling_rate=self.sample_rate,
            threshold=options.threshold,
            neg_threshold=options.neg_threshold,
            min_speech_duration_ms=options.min_speech_duration_ms,
            min_silence_duration_ms=options.min_silence_duration_ms,
            speech_pad_ms=options.speech_pad_ms,
            max_speech_duration_s=max_speech if max_speech is not None else float("inf"),
            audio_length_samples=len(stream),
        )
        rate = self.sample_rate
        segments = tuple(
            SpeechSegment(round(s["start"] / rate, 3), round(s["end"] / rate, 3)) for s in raw
        )
        return VadResult(duration=round(len(stream) / rate, 3), segments=segments)


def effective_options(defaults: SileroVadOptions, params: VadParams) -> SileroVadOptions:
    """The model's defaults with the request's overrides applied (``VadParams.overrides``)."""
    return defaults.model_copy(update=params.overrides())
