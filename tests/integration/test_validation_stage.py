"""The ``validate`` stage in a served TTS pipeline: Whisper (tiny random weights) transcribes
every synthesised sentence, and the score reaches the client as a header, an SSE field and a
Prometheus metric. Random weights mean the transcripts are gibberish, so every sentence fails
the check and is retried exactly ``max_retries`` (1 in configs/test.yaml) times."""

from __future__ import annotations

import base64
import json
import re

import httpx
import openai

from harmonyspeech.audio import decode_audio

TEXT = "Hello there. This is the second sentence, a little longer than the first! And a third."


def test_a_validated_request_reports_its_word_error_rate(openai_client: openai.OpenAI) -> None:
    raw = openai_client.audio.speech.with_raw_response.create(
        model="tts-validated",
        voice="alloy",
        input=TEXT,
        response_format="wav",
        extra_body={"seed": 3, "stream": False},
    )
    wer = float(raw.headers["x-harmonyspeech-wer"])
    assert wer > 0.35  # gibberish from random weights fails the threshold
    audio = decode_audio(raw.content, sample_rate=24000)
    assert audio.duration > 0.1


def test_sse_done_event_carries_the_validation(openai_client: openai.OpenAI) -> None:
    with openai_client.audio.speech.with_streaming_response.create(
        model="tts-validated",
        voice="alloy",
        input=TEXT,
        response_format="pcm",
        extra_body={"seed": 3, "stream_format": "sse"},
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    *deltas, done = [json.loads(line.removeprefix("data: ")) for line in lines]
    assert deltas and all(e["type"] == "speech.audio.delta" for e in deltas)
    assert b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert done["type"] == "speech.audio.done"
    validation = done["validation"]
    assert validation["metric"] == "wer" and validation["score"] > 0.35
    assert validation["retries"] >= 1  # one retry per sentence item (max_retries: 1)
    assert isinstance(validation["transcript"], str)


def test_unvalidated_pipelines_send_no_score(openai_client: openai.OpenAI) -> None:
    raw = openai_client.audio.speech.with_raw_response.create(
        model="tts-1", voice="alloy", input=TEXT, extra_body={"stream": False}
    )
    assert "x-harmonyspeech-wer" not in raw.headers


def test_scores_and_retries_are_exported_as_metrics(
    openai_client: openai.OpenAI, client: httpx.Client
) -> None:
    def metric(name: str) -> float:
        text = client.get("/metrics").text
        pattern = rf'^{name}\{{[^}}]*pipeline="tts-validated"[^}}]*\}} (\S+)$'
        match = re.search(pattern, text, re.MULTILINE)
        return float(match[1]) if match else 0.0

    before = metric("harmonyspeech_validation_error_rate_count")
    retries_before = metric("harmonyspeech_validation_retries_total")
    openai_client.audio.speech.create(
        model="tts-validated", voice="alloy", input=TEXT, extra_body={"seed": 4, "stream": False}
    )
    assert metric("harmonyspeech_validation_error_rate_count") == before + 1
    assert metric("harmonyspeech_validation_retries_total") > retries_before
