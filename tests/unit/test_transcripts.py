"""Window planning and the OpenAI text formats of transcripts."""

from __future__ import annotations

import dataclasses

import pytest

from harmonyspeech.api import transcript_formats as formats
from harmonyspeech.models.types import SpeechSegment, TranscribedSegment, TranscribedWord
from harmonyspeech.pipelines.transcripts import Span, Transcript, plan_windows


def test_without_vad_the_input_is_cut_every_30_seconds() -> None:
    assert plan_windows(65.0, None) == [Span(0, 30), Span(30, 60), Span(60, 65)]
    assert plan_windows(12.5, None) == [Span(0, 12.5)]
    # One sample past 30 s is no window of its own (a whole window of work on silence).
    assert plan_windows(480_001 / 16_000, None) == [Span(0, 30)]


def test_vad_segments_are_merged_into_windows_of_at_most_30_seconds() -> None:
    speech = (
        SpeechSegment(1.0, 5.0),
        SpeechSegment(8.0, 20.0),
        SpeechSegment(25.0, 40.0),  # would stretch the first window past 30 s
        SpeechSegment(100.0, 170.0),  # longer than a window on its own
    )
    assert plan_windows(200.0, speech) == [
        Span(1.0, 20.0),
        Span(25.0, 40.0),
        Span(100.0, 130.0),
        Span(130.0, 160.0),
        Span(160.0, 170.0),
    ]


def test_no_speech_means_no_windows() -> None:
    assert plan_windows(10.0, ()) == []


def segment(start: float, end: float, text: str, words: tuple = ()) -> TranscribedSegment:
    seek = int(start // 30) * 3000  # as if cut every 30 s
    return TranscribedSegment(start, end, text, (1, 2), -0.5, 0.1, 1.2, 0.0, words, seek)


@pytest.fixture
def transcript() -> Transcript:
    words = (TranscribedWord(" Hello", 0.5, 0.9, 0.9), TranscribedWord(" world.", 0.9, 1.4, 0.8))
    return Transcript(
        language="en",
        duration=3725.5,
        segments=[segment(0.5, 1.4, " Hello world.", words), segment(3723.25, 3725.0, " Bye.")],
    )


def test_text_joins_segments(transcript: Transcript) -> None:
    assert transcript.text == "Hello world. Bye."
    assert formats.as_json(transcript) == {
        "text": "Hello world. Bye.",
        "usage": {"type": "duration", "seconds": 3726},
    }


def test_srt(transcript: Transcript) -> None:
    assert formats.as_srt(transcript) == (
        "1\n00:00:00,500 --> 00:00:01,400\nHello world.\n\n2\n01:02:03,250 --> 01:02:05,000\nBye.\n"
    )


def test_vtt(transcript: Transcript) -> None:
    assert formats.as_vtt(transcript) == (
        "WEBVTT\n\n00:00:00.500 --> 00:00:01.400\nHello world.\n\n"
        "01:02:03.250 --> 01:02:05.000\nBye.\n"
    )


def test_verbose_json(transcript: Transcript) -> None:
    body = formats.as_verbose_json(transcript, task="transcribe", words=True)
    assert body["language"] == "english" and body["task"] == "transcribe"
    assert [s["id"] for s in body["segments"]] == [0, 1]
    assert [s["seek"] for s in body["segments"]] == [0, 372000]
    assert body["words"] == [
        {"word": " Hello", "start": 0.5, "end": 0.9},
        {"word": " world.", "start": 0.9, "end": 1.4},
    ]
    assert "words" not in formats.as_verbose_json(transcript, task="transcribe", words=False)


def test_verbose_json_of_a_translation_names_english_whatever_was_spoken(
    transcript: Transcript,
) -> None:
    spoken_italian = dataclasses.replace(transcript, language="it")
    assert formats.as_verbose_json(spoken_italian, task="transcribe", words=False)["language"] == (
        "italian"
    )
    translated = formats.as_verbose_json(spoken_italian, task="translate", words=False)
    assert translated["language"] == "english" and translated["task"] == "translate"
