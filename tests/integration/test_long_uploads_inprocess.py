"""Long recordings through the HTTP app over in-process workers (real tiny Whisper, no Ray):
more windows than Whisper's queue holds, and a deadline that grows with the audio; and so does
a speech request's, with the audio its text makes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from harmonyspeech.audio.encode import encode_audio
from harmonyspeech.config import load_config
from harmonyspeech.pipelines.runtime import LocalEngine
from tests.conftest import TinyWeights, served_config_data
from tests.helpers import asgi_client

WHISPER_QUEUE = 3
RECORDING_S = 200.0  # seven 30 s windows, over twice what the queue holds


def recording(seconds: float) -> bytes:
    rng = np.random.default_rng(7)
    samples = (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)
    return encode_audio(samples, input_rate=16000, fmt="flac")


def engine_for(weights: TinyWeights, *, timeout_per_audio_s: float) -> LocalEngine:
    data = served_config_data(weights)
    data["server"]["limits"].update(
        max_upload_bytes=25 * 1024 * 1024,
        max_audio_seconds=RECORDING_S + 10,
        # Far less than seven windows take here, unless the audio's length extends it.
        request_timeout_s=0.05,
        timeout_per_audio_s=timeout_per_audio_s,
    )
    for model in data["models"]:
        if model["family"] == "faster-whisper":
            model["batching"]["max_queue"] = WHISPER_QUEUE
    return LocalEngine(load_config(data))


@pytest.fixture(scope="module")
def engine(tiny_weights: TinyWeights) -> Iterator[LocalEngine]:
    with engine_for(tiny_weights, timeout_per_audio_s=1.0) as local:
        yield local


def transcription_form(response_format: str = "verbose_json") -> dict[str, str]:
    return {"model": "whisper-plain", "language": "en", "response_format": response_format}


async def test_a_recording_longer_than_whisper_queue_holds_is_transcribed_whole(
    http: httpx.AsyncClient,
) -> None:
    # Its windows used to be queued all at once: past the bound, every such recording was a
    # 503 even on an idle server.
    files = {"file": ("meeting.flac", recording(RECORDING_S))}
    response = await http.post(
        "/v1/audio/transcriptions", files=files, data=transcription_form(), timeout=120
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["duration"] == pytest.approx(RECORDING_S, abs=0.01)
    window_starts = sorted({segment["seek"] for segment in body["segments"]})
    assert window_starts == [3000 * i for i in range(7)]


async def test_a_streamed_long_recording_gets_every_window(http: httpx.AsyncClient) -> None:
    files = {"file": ("meeting.flac", recording(RECORDING_S))}
    form = {**transcription_form("json"), "stream": "true"}
    async with http.stream(
        "POST", "/v1/audio/transcriptions", files=files, data=form, timeout=120
    ) as response:
        assert response.status_code == 200
        events = [line async for line in response.aiter_lines() if line.startswith("data: ")]
    assert '"transcript.text.done"' in events[-1]
    assert len(events) >= 8  # at least a delta per window, then done


SPEECH = {"model": "tts-1", "voice": "alloy", "input": "A sentence. " * 50, "stream": False}


async def test_a_long_text_has_time_for_the_audio_it_makes(http: httpx.AsyncClient) -> None:
    # Speech had request_timeout_s alone, however long its text: a 4096-character input at a
    # low speed could not finish in it even on an idle server.
    response = await http.post("/v1/audio/speech", json=SPEECH, timeout=120)
    assert response.status_code == 200, response.text


async def post_long_work(local: LocalEngine) -> list[httpx.Response]:
    async with asgi_client(local.runtime) as client:
        files = {"file": ("meeting.flac", recording(RECORDING_S))}
        transcription = await client.post(
            "/v1/audio/transcriptions", files=files, data=transcription_form(), timeout=120
        )
        speech = await client.post("/v1/audio/speech", json=SPEECH, timeout=120)
        return [transcription, speech]


def test_without_time_per_audio_second_the_same_work_runs_out_of_time(
    tiny_weights: TinyWeights,
) -> None:
    with engine_for(tiny_weights, timeout_per_audio_s=0.0) as local:
        responses = asyncio.run(post_long_work(local))
    for response in responses:
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "deadline_exceeded"
