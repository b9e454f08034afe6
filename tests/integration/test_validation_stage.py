"""The ``validate`` stage in a served TTS pipeline: Whisper (tiny random weights) transcribes
every synthesised sentence, and the score reaches the client as a header, an SSE field and a
Prometheus metric. Random weights mean the transcripts are gibberish, so every sentence fails
the check and is retried exactly ``max_retries`` (1 in configs/test.yaml) times."""

from __future__ import annotations

import base64
import json

import openai

from harmonyspeech.audio import decode_audio
from tests.helpers import scrape, wait_until
from tests.integration.conftest import ServedApp

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
    openai_client: openai.OpenAI, served: ServedApp
) -> None:
    # Served by Ray Serve, the ingress's metrics go out through Ray's metrics agent, which
    # exports what was recorded every few seconds: poll it (bounded).
    url = f"http://127.0.0.1:{served.metrics_port}/metrics"

    def metric(name: str) -> float:
        return sum(
            value
            for sample, labels, value in scrape(url)
            if sample == name and labels.get("pipeline") == "tts-validated"
        )

    before = metric("ray_harmonyspeech_validation_error_rate_count")
    retries_before = metric("ray_harmonyspeech_validation_retries_total")
    openai_client.audio.speech.create(
        model="tts-validated", voice="alloy", input=TEXT, extra_body={"seed": 4, "stream": False}
    )
    # Earlier requests may still be on their way to the agent, so the counts grow by >= 1.
    wait_until(
        lambda: (
            metric("ray_harmonyspeech_validation_error_rate_count") >= before + 1
            and metric("ray_harmonyspeech_validation_retries_total") > retries_before
        ),
        timeout=40,
        what="the validation metrics to reach Ray's metrics agent",
        every=1.0,
    )
