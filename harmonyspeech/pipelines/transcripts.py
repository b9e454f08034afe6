"""Transcription requests: 30-second windows out, one ordered transcript back in."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from harmonyspeech.audio import Audio
from harmonyspeech.models.types import SpeechSegment, TranscribedSegment, WindowTranscript

WINDOW_S = 30.0
MIN_WINDOW_S = 0.01
"""Shortest window worth transcribing (anything shorter is a few stray samples)."""
SAMPLE_RATE = 16000

# Whisper's languages by code (OpenAI's verbose_json reports the names instead of codes).
LANGUAGE_NAMES = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian",
    "ko": "korean", "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish",
    "pl": "polish", "ca": "catalan", "nl": "dutch", "ar": "arabic", "sv": "swedish",
    "it": "italian", "id": "indonesian", "hi": "hindi", "fi": "finnish", "vi": "vietnamese",
    "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay", "cs": "czech",
    "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian",
    "la": "latin", "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak",
    "te": "telugu", "fa": "persian", "lv": "latvian", "bn": "bengali", "sr": "serbian",
    "az": "azerbaijani", "sl": "slovenian", "kn": "kannada", "et": "estonian",
    "mk": "macedonian", "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian",
    "ne": "nepali", "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian",
    "sw": "swahili", "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala",
    "km": "khmer", "sn": "shona", "yo": "yoruba", "so": "somali", "af": "afrikaans",
    "oc": "occitan", "ka": "georgian", "be": "belarusian", "tg": "tajik", "sd": "sindhi",
    "gu": "gujarati", "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek",
    "fo": "faroese", "ht": "haitian creole", "ps": "pashto", "tk": "turkmen",
    "nn": "nynorsk", "mt": "maltese", "sa": "sanskrit", "lb": "luxembourgish",
    "my": "myanmar", "bo": "tibetan", "tl": "tagalog", "mg": "malagasy", "as": "assamese",
    "tt": "tatar", "haw": "hawaiian", "ln": "lingala", "ha": "hausa", "ba": "bashkir",
    "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}  # fmt: skip


@dataclass(frozen=True)
class TranscriptionOptions:
    """What the client asked for."""

    task: str = "transcribe"
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    word_timestamps: bool = False


@dataclass(frozen=True)
class Span:
    """A contiguous stretch of the input, in seconds."""

    start: float
    end: float


@dataclass
class Transcript:
    """A whole request's transcript: segments in order with absolute times."""

    language: str
    duration: float
    segments: list[TranscribedSegment] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments).strip()

    def extend(self, window: WindowTranscript) -> list[TranscribedSegment]:
        """Append a window's segments; returns the ones that carry text."""
        spoken = [s for s in window.segments if s.text.strip()]
        self.segments.extend(spoken)
        return spoken


def plan_windows(duration: float, speech: tuple[SpeechSegment, ...] | None) -> list[Span]:
    """Cut the input into windows of at most 30 s.

    With VAD segments, each window spans consecutive speech segments (silence between them
    included, so times stay absolute) and silence outside speech is skipped; a segment longer
    than a window is cut. Without VAD, the input is cut every 30 s. Either way, a window of
    ``MIN_WINDOW_S`` or less (the last few samples past a 30 s cut) is dropped: it would cost a
    whole window of Whisper's work, on what is nearly silence, where Whisper invents text.
    """
    if speech is None:
        return _long_enough(_fixed(Span(0.0, duration)))
    windows: list[Span] = []
    current: Span | None = None
    for segment in speech:
        span = Span(segment.start, min(segment.end, duration))
        if current is not None and span.end - current.start <= WINDOW_S:
            current = Span(current.start, span.end)
            continue
        if current is not None:
            windows += _fixed(current)
        current = span
    if current is not None:
        windows += _fixed(current)
    return _long_enough(windows)


def _long_enough(windows: list[Span]) -> list[Span]:
    return [w for w in windows if w.end - w.start > MIN_WINDOW_S]


def _fixed(span: Span) -> list[Span]:
    starts = np.arange(span.start, span.end, WINDOW_S)
    return [Span(float(s), float(min(s + WINDOW_S, span.end))) for s in starts]


def window_audio(audio: Audio, span: Span) -> np.ndarray:
    """The samples of ``span`` (16 kHz mono)."""
    start = round(span.start * audio.sample_rate)
    end = round(span.end * audio.sample_rate)
    return audio.samples[start:end]
