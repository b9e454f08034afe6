"""``GET /metrics`` of the in-process app (LocalEngine, no Ray) after real speech, VAD,
transcription and failing requests: every metric family is there with sensible values.

The module records into a fresh Prometheus registry, so counts are exact."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from prometheus_client import CollectorRegistry

from harmonyspeech import telemetry
from harmonyspeech.config import load_config
from harmonyspeech.pipelines.runtime import LocalEngine
from harmonyspeech.telemetry import PrometheusBackend
from harmonyspeech.text import split_sentences_latin
from tests.conftest import TinyWeights, served_config_data
from tests.helpers import parse_samples
from tests.unit.vad_clips import clip, clip_bytes

TEXT = " ".join(
    f"Sentence {i} of this request goes on for a while, so that the text has more than one piece."
    for i in range(6)
)
ITEMS = len(split_sentences_latin(TEXT))
PCM_RATE = 24000


@pytest.fixture(scope="module")
def engine(tiny_weights: TinyWeights) -> Iterator[LocalEngine]:
    previous = telemetry.use(PrometheusBackend(CollectorRegistry()))
    try:
        with LocalEngine(load_config(served_config_data(tiny_weights))) as local:
            yield local
    finally:
        telemetry.use(previous)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200
    return {
        (name, frozenset(labels.items())): value
        for name, labels, value in parse_samples(response.text)
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_requests_show_up_in_every_metric(http: httpx.AsyncClient) -> None:
    sdk = openai.AsyncOpenAI(
        base_url="http://test/v1", api_key="unused", max_retries=0, http_client=http
    )
    walls: list[float] = []
    started = time.perf_counter()
    whole = await sdk.audio.speech.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="pcm", extra_body={"seed": 1}
    )
    walls.append(time.perf_counter() - started)
    started = time.perf_counter()
    async with sdk.audio.speech.with_streaming_response.create(
        model="tts-1", voice="nova", input=TEXT, response_format="pcm", extra_body={"seed": 2}
    ) as response:
        streamed = await response.read()
    walls.append(time.perf_counter() - started)
    durations = [len(pcm) / (2 * PCM_RATE) for pcm in (whole.content, streamed)]

    vad = await http.post("/v1/audio/vad", files={"file": ("a.flac", clip_bytes("short"))})
    assert vad.status_code == 200
    await sdk.audio.transcriptions.create(
        model="whisper-1", file=("b.flac", clip_bytes("two_phrases"))
    )
    with pytest.raises(openai.NotFoundError):
        await sdk.audio.speech.create(model="no-such-model", voice="alloy", input=TEXT)

    m = await scrape(http)

    # Per model instance: the queues drained, batches ran, padding within (0, 1]. (OpenVoice
    # gets no work: convert passes built-in voices through.)
    for model in ("melo-en", "silero-vad", "whisper"):
        assert value(m, "harmonyspeech_queue_depth", model=model) == 0.0, model
        batches = value(m, "harmonyspeech_batch_size_count", model=model)
        assert batches is not None and batches >= 1, model
        items = value(m, "harmonyspeech_batch_size_sum", model=model)
        assert items is not None and items >= batches
        efficiency = value(m, "harmonyspeech_batch_padding_efficiency_sum", model=model)
        assert efficiency is not None and 0 < efficiency / batches <= 1
        latency = value(m, "harmonyspeech_batch_latency_seconds_sum", model=model)
        assert latency is not None and latency > 0
    assert value(m, "harmonyspeech_batch_size_count", model="openvoice") is None
    # Every sentence item of both speech requests was synthesised, then passed through convert.
    assert ITEMS >= 2
    assert value(m, "harmonyspeech_batch_size_sum", model="melo-en") == 2 * ITEMS
    for stage in ("synthesize", "convert"):
        labels = {"pipeline": "tts", "stage": stage}
        assert value(m, "harmonyspeech_stage_latency_seconds_count", **labels) == 2 * ITEMS
    for pipeline, stage in (("vad", "vad"), ("whisper", "vad"), ("whisper", "transcribe")):
        labels = {"pipeline": pipeline, "stage": stage}
        assert value(m, "harmonyspeech_stage_latency_seconds_count", **labels) == 1

    # Speech: time to first audio within each request's wall time, audio seconds = returned.
    speech = {"pipeline": "tts", "priority": "interactive"}
    assert value(m, "harmonyspeech_time_to_first_audio_seconds_count", **speech) == 2
    ttfa = value(m, "harmonyspeech_time_to_first_audio_seconds_sum", **speech)
    assert ttfa is not None and 0 < ttfa < sum(walls)
    produced = value(m, "harmonyspeech_audio_output_seconds_total", pipeline="tts")
    assert produced == pytest.approx(sum(durations), abs=0.01)
    rtf_labels = {"pipeline": "tts", "audio": "output"}
    assert value(m, "harmonyspeech_real_time_factor_count", **rtf_labels) == 2
    rtf = value(m, "harmonyspeech_real_time_factor_sum", **rtf_labels)
    bound = sum(wall / seconds for wall, seconds in zip(walls, durations, strict=True))
    assert rtf is not None and 0 < rtf < bound

    # Uploads: their seconds and real-time factor.
    for pipeline, name in (("vad", "short"), ("whisper", "two_phrases")):
        seconds = value(m, "harmonyspeech_audio_input_seconds_total", pipeline=pipeline)
        assert seconds == pytest.approx(len(clip(name)) / 16000, abs=0.01)
        labels = {"pipeline": pipeline, "audio": "input"}
        assert value(m, "harmonyspeech_real_time_factor_count", **labels) == 1

    # Errors by type and requests by route.
    not_found = {"type": "invalid_request_error", "code": "model_not_found", "status": "404"}
    assert value(m, "harmonyspeech_errors_total", **not_found) == 1
    post = {"endpoint": "/v1/audio/speech", "method": "POST"}
    assert value(m, "harmonyspeech_requests_total", **post, status="200") == 2
    assert value(m, "harmonyspeech_requests_total", **post, status="404") == 1
    vad_ok = {"endpoint": "/v1/audio/vad", "method": "POST", "status": "200"}
    assert value(m, "harmonyspeech_requests_total", **vad_ok) == 1


async def test_unknown_routes_and_early_rejections_are_counted(
    http: httpx.AsyncClient,
) -> None:
    before = await scrape(http)
    assert (await http.get("/v1/no/such/route")).status_code == 404
    assert (await http.delete("/v1/models")).status_code == 405
    after = await scrape(http)

    def grew(name: str, **labels: str) -> float:
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    unmatched = {"endpoint": "unmatched", "method": "GET", "status": "404"}
    assert grew("harmonyspeech_requests_total", **unmatched) == 1
    wrong_method = {"endpoint": "/v1/models", "method": "DELETE", "status": "405"}
    assert grew("harmonyspeech_requests_total", **wrong_method) == 1
    not_allowed = {"type": "invalid_request_error", "code": "method_not_allowed", "status": "405"}
    assert grew("harmonyspeech_errors_total", **not_allowed) == 1


async def test_a_client_that_leaves_before_its_answer_is_499_not_500(
    http: httpx.AsyncClient,
) -> None:
    # Serve cancels the request of a client that hung up; that used to count as a 500.
    before = await scrape(http)
    body = {"model": "tts-1", "voice": "alloy", "input": TEXT, "stream": False, "speed": 0.25}
    leaving = asyncio.create_task(http.post("/v1/audio/speech", json=body))
    await asyncio.sleep(0.5)  # its sentences are queued or running
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    after = await scrape(http)
    speech = {"endpoint": "/v1/audio/speech", "method": "POST"}
    for status, grown in (("499", 1), ("500", 0)):
        labels = {**speech, "status": status}
        was = value(before, "harmonyspeech_requests_total", **labels) or 0
        assert (value(after, "harmonyspeech_requests_total", **labels) or 0) - was == grown
