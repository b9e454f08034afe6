"""faster-whisper, batched across requests.

A work item is one window of at most 30 s of one request. Windows from any number of requests are
stacked into one encoder call and one ``generate`` call with a prompt per window (so language,
task and prompt text may differ inside a batch); only the decoding settings that CTranslate2 takes
per call (temperature, generation length) split a batch into groups. Every window is padded to
30 s before the encoder, so a batched window sees exactly the computation it would see alone.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harmonyspeech.config import FasterWhisperModelConfig
from harmonyspeech.errors import InvalidRequestError, ModelLoadError
from harmonyspeech.models.base import ModelAdapter, resolve_num_threads
from harmonyspeech.models.types import (
    TranscribedSegment,
    TranscribedWord,
    TranscribeWindow,
    WindowTranscript,
)

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WINDOW_SECONDS = 30.0
# faster-whisper's defaults for attaching punctuation to neighbouring words.
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
RANDOM_CACHE = Path.home() / ".cache" / "harmonyspeech" / "random-weights"


class FasterWhisperAdapter(ModelAdapter[TranscribeWindow, WindowTranscript]):
    """Transcribes and translates windows from many requests per forward pass."""

    config: FasterWhisperModelConfig

    def __init__(self, config: FasterWhisperModelConfig):
        super().__init__(config)
        self._whisper: Any = None
        self._random_weights = False
        self._model_path = ""

    # -- loading -----------------------------------------------------------------------------

    def load(self) -> None:
        from faster_whisper import WhisperModel

        self._model_path = self._resolve_model()
        device, index = _device(self.config.device)
        self._whisper = WhisperModel(
            self._model_path,
            device=device,
            device_index=index,
            compute_type=self.config.options.compute_type,
            cpu_threads=resolve_num_threads(self.config),
            num_workers=1,
        )

    def _resolve_model(self) -> str:
        weights = self.config.weights
        if weights.path is not None:
            if not (Path(weights.path) / "model.bin").is_file():
                raise ModelLoadError(f"{weights.path} is not a CTranslate2 Whisper directory")
            return weights.path
        name = weights.repo_id or self.config.options.model
        try:
            return _download(name, weights.revision)
        except Exception as exc:
            if not weights.allow_random:
                raise ModelLoadError(
                    f"Whisper weights {name!r} are not in the local Hugging Face cache and could "
                    f"not be downloaded ({type(exc).__name__}); set weights.path to a "
                    "CTranslate2 directory, or weights.allow_random for a demo"
                ) from exc
        return self._random_model()

    def _random_model(self) -> str:
        from harmonyspeech.models.whisper_fixtures import build_whisper_model

        size = self.config.options.random_size
        path = RANDOM_CACHE / f"whisper-{size}"
        if not (path / "model.bin").is_file():
            build_whisper_model(path, size=size)
        logger.warning(
            "MODEL %r RUNS ON RANDOM WEIGHTS (Whisper %s dims): transcripts are meaningless",
            self.config.name,
            size,
        )
        self._random_weights = True
        return str(path)

    def describe(self) -> dict[str, Any]:
        return {
            "model": self._model_path,
            "random_weights": self._random_weights,
            "multilingual": bool(self._whisper.model.is_multilingual),
        }

    # -- inference ---------------------------------------------------------------------------

    def cost(self, item: TranscribeWindow) -> float:
        return 1.0  # every window is padded to 30 s for the encoder

    def infer_batch(self, items: Sequence[TranscribeWindow]) -> list[WindowTranscript | Exception]:
        results: list[WindowTranscript | Exception | None] = [self._check(i) for i in items]
        groups: dict[tuple[float, int], list[int]] = defaultdict(list)
        for index, item in enumerate(items):
            if results[index] is None:
                groups[(item.temperature, self._max_length(item))].append(index)
        for (temperature, max_length), indices in groups.items():
            batch = [items[i] for i in indices]
            for index, result in zip(
                indices, self._decode(batch, temperature, max_length), strict=True
            ):
                results[index] = result
        return results  # type: ignore[return-value]

    def _check(self, item: TranscribeWindow) -> InvalidRequestError | None:
        if item.audio.ndim != 1 or item.audio.size == 0:
            return InvalidRequestError("expected a non-empty mono window", param="file")
        if item.task not in ("transcribe", "translate"):
            return InvalidRequestError(f"unknown task {item.task!r}")
        if item.language is not None and item.language not in self._languages():
            return InvalidRequestError(f"unsupported language {item.language!r}", param="language")
        return None

    def _languages(self) -> list[str]:
        return list(self._whisper.supported_languages)

    def _max_length(self, item: TranscribeWindow) -> int:
        limit = int(self._whisper.max_length)
        new_tokens = self.config.options.max_new_tokens
        if new_tokens is None:
            return limit
        return min(limit, len(self._prompt(item, item.language or "en")) + new_tokens)

    def _decode(
        self, items: list[TranscribeWindow], temperature: float, max_length: int
    ) -> list[WindowTranscript]:
        features = self._features(items)
        encoded = self._whisper.encode(features)
        languages = self._detect(items, encoded)
        prompts = [self._prompt(item, lang) for item, lang in zip(items, languages, strict=True)]
        results = self._whisper.model.generate(
            encoded,
            prompts,
            max_length=max_length,
            suppress_blank=True,
            suppress_tokens=self._suppressed(),
            return_scores=True,
            return_no_speech_prob=True,
            **_sampling(self.config.options.beam_size, temperature),
        )
        windows = [
            self._split(item, lang, result, temperature)
            for item, lang, result in zip(items, languages, results, strict=True)
        ]
        self._add_words(items, languages, windows, features, encoded)
        return [
            WindowTranscript(
                language=lang,
                segments=tuple(_segment(d, _bounds(item)) for d in window),
            )
            for item, lang, window in zip(items, languages, windows, strict=True)
        ]

    def _features(self, items: Sequence[TranscribeWindow]) -> np.ndarray:
        from faster_whisper.audio import pad_or_trim

        extract = self._whisper.feature_extractor
        return np.stack([pad_or_trim(extract(item.audio)[..., :-1]) for item in items])

    def _detect(self, items: Sequence[TranscribeWindow], encoded: Any) -> list[str]:
        if all(item.language for item in items):
            return [item.language for item in items]  # type: ignore[misc]
        if not self._whisper.model.is_multilingual:
            return [item.language or "en" for item in items]
        detected = self._whisper.model.detect_language(encoded)
        return [
            item.language or ranked[0][0].strip("<|>")
            for item, ranked in zip(items, detected, strict=True)
        ]

    def _tokenizer(self, language: str, task: str) -> Any:
        from faster_whisper.tokenizer import Tokenizer

        multilingual = self._whisper.model.is_multilingual
        return Tokenizer(self._whisper.hf_tokenizer, multilingual, task=task, language=language)

    def _prompt(self, item: TranscribeWindow, language: str) -> list[int]:
        tokenizer = self._tokenizer(language, item.task)
        previous = tokenizer.encode(" " + item.prompt.strip()) if item.prompt else []
        return list(self._whisper.get_prompt(tokenizer, previous_tokens=previous))

    def _suppressed(self) -> list[int]:
        from faster_whisper.transcribe import get_suppressed_tokens

        tokenizer = self._tokenizer("en", "transcribe")
        return list(get_suppressed_tokens(tokenizer, self.config.options.suppress_tokens))

    def _split(
        self, item: TranscribeWindow, language: str, result: Any, temperature: float
    ) -> list[dict[str, Any]]:
        from faster_whisper.transcribe import get_compression_ratio

        tokenizer = self._tokenizer(language, item.task)
        tokens = result.sequences_ids[0]
        duration = min(len(item.audio) / SAMPLE_RATE, WINDOW_SECONDS)
        pieces, _, _ = self._whisper._split_segments_by_timestamps(
            tokenizer=tokenizer,
            tokens=tokens,
            time_offset=item.offset,
            segment_size=int(math.ceil(duration) * self._whisper.frames_per_second),
            segment_duration=duration,
            seek=0,
        )
        # CTranslate2 returns the length-normalised score; undo it to average per token.
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        segments = []
        for piece in pieces:
            text = tokenizer.decode(piece["tokens"])
            segments.append(
                {
                    "start": piece["start"],
                    "end": piece["end"],
                    "text": text,
                    "tokens": piece["tokens"],
                    "avg_logprob": avg_logprob,
                    "no_speech_prob": result.no_speech_prob,
                    "compression_ratio": get_compression_ratio(text),
                    "temperature": temperature,
                    "seek": int(item.offset * self._whisper.frames_per_second),
                }
            )
        return segments

    def _add_words(
        self,
        items: Sequence[TranscribeWindow],
        languages: list[str],
        windows: list[list[dict[str, Any]]],
        features: np.ndarray,
        encoded: Any,
    ) -> None:
        # Alignment takes one start sequence (language and task tokens) per call, so windows
        # that want word timestamps are aligned per (language, task).
        wanted: dict[tuple[str, str], list[int]] = defaultdict(list)
        for index, item in enumerate(items):
            if item.word_timestamps and windows[index]:
                wanted[(languages[index], item.task)].append(index)
        for (language, task), indices in wanted.items():
            subset = encoded
            if len(indices) != len(items):
                subset = self._whisper.encode(features[indices])
            sizes = [
                math.ceil(len(items[i].audio) / SAMPLE_RATE) * self._whisper.frames_per_second
                for i in indices
            ]
            self._whisper.add_word_timestamps(
                [windows[i] for i in indices],
                self._tokenizer(language, task),
                subset,
                sizes,
                PREPEND_PUNCTUATIONS,
                APPEND_PUNCTUATIONS,
                0.0,
            )


def _bounds(item: TranscribeWindow) -> tuple[float, float]:
    return item.offset, item.offset + min(len(item.audio) / SAMPLE_RATE, WINDOW_SECONDS)


def _segment(data: dict[str, Any], bounds: tuple[float, float]) -> TranscribedSegment:
    # Timestamp tokens can point past the window's real audio (it is padded to 30 s).
    def clamp(value: Any) -> float:
        return round(min(max(float(value), bounds[0]), bounds[1]), 3)

    words = tuple(
        TranscribedWord(
            word=w["word"],
            start=clamp(w["start"]),
            end=clamp(w["end"]),
            probability=float(w["probability"]),
        )
        for w in data.get("words", [])
    )
    return TranscribedSegment(
        start=clamp(data["start"]),
        end=clamp(data["end"]),
        text=data["text"],
        tokens=tuple(int(t) for t in data["tokens"]),
        avg_logprob=float(data["avg_logprob"]),
        no_speech_prob=float(data["no_speech_prob"]),
        compression_ratio=float(data["compression_ratio"]),
        temperature=float(data["temperature"]),
        words=words,
        seek=int(data["seek"]),
    )


def _sampling(beam_size: int, temperature: float) -> dict[str, Any]:
    if temperature > 0:
        # As faster-whisper's fallback: sample from the whole distribution.
        return {"beam_size": 1, "sampling_topk": 0, "sampling_temperature": temperature}
    return {"beam_size": beam_size}


def _device(device: str) -> tuple[str, int]:
    kind, _, index = device.partition(":")
    return kind, int(index or 0)


def _download(name: str, revision: str | None) -> str:
    from faster_whisper.utils import download_model

    try:
        return str(download_model(name, local_files_only=True, revision=revision))
    except Exception:
        logger.info("Whisper %r is not cached locally; trying the hub", name)
    return str(download_model(name, revision=revision))
