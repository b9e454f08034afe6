"""Transcripts in OpenAI's ``response_format`` shapes: json, text, srt, vtt, verbose_json."""

from __future__ import annotations

import math
from typing import Any

from harmonyspeech.models.types import TranscribedSegment
from harmonyspeech.pipelines.transcripts import LANGUAGE_NAMES, Transcript

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")


def usage(transcript: Transcript) -> dict[str, Any]:
    """Billing-style usage: whole seconds of input audio."""
    return {"type": "duration", "seconds": math.ceil(transcript.duration)}


def as_json(transcript: Transcript) -> dict[str, Any]:
    return {"text": transcript.text, "usage": usage(transcript)}


def as_verbose_json(transcript: Transcript, *, task: str, words: bool) -> dict[str, Any]:
    """OpenAI's verbose_json: ``language`` names the spoken language of a transcription, and
    for a translation the language of the output, which is always English (as OpenAI's)."""
    language = "en" if task == "translate" else transcript.language
    body: dict[str, Any] = {
        "task": task,
        "language": LANGUAGE_NAMES.get(language, language),
        "duration": round(transcript.duration, 3),
        "text": transcript.text,
        "segments": [_segment(i, s) for i, s in enumerate(transcript.segments)],
        "usage": usage(transcript),
    }
    if words:
        body["words"] = [
            {"word": w.word, "start": round(w.start, 2), "end": round(w.end, 2)}
            for s in transcript.segments
            for w in s.words
        ]
    return body


def _segment(index: int, segment: TranscribedSegment) -> dict[str, Any]:
    return {
        "id": index,
        "seek": segment.seek,
        "start": segment.start,
        "end": segment.end,
        "text": segment.text,
        "tokens": list(segment.tokens),
        "temperature": segment.temperature,
        "avg_logprob": segment.avg_logprob,
        "compression_ratio": segment.compression_ratio,
        "no_speech_prob": segment.no_speech_prob,
    }


def as_srt(transcript: Transcript) -> str:
    blocks = [
        f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text.strip()}\n"
        for i, s in enumerate(transcript.segments, start=1)
    ]
    return "\n".join(blocks)


def as_vtt(transcript: Transcript) -> str:
    blocks = [
        f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text.strip()}\n"
        for s in transcript.segments
    ]
    return "\n".join(["WEBVTT\n", *blocks])


def _clock(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"
