"""``POST /v1/audio/vad`` through the real Ray Serve app."""

from __future__ import annotations

import asyncio
import io
import wave

import httpx
import numpy as np
import pytest

from harmonyspeech.audio import encode_audio
from tests.unit.vad_clips import clip_bytes, regions

# Exact boundaries: no padding, and pauses between words inside a phrase do not split it.
PRECISE = {"speech_pad_ms": "0", "min_silence_duration_ms": "300"}
TOLERANCE_S = 0.1


def post_vad(client: httpx.Client, content: bytes, name: str = "clip.flac", **form: str):
    return client.post("/v1/audio/vad", files={"file": (name, content)}, data=form)


def assert_error(response: httpx.Response, status: int, param: str | None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    return error


@pytest.mark.parametrize("name", ["two_phrases", "distractors", "short"])
def test_finds_the_known_speech_regions(client: httpx.Client, name: str) -> None:
    response = post_vad(client, clip_bytes(name), **PRECISE)
    assert response.status_code == 200, response.text
    body = response.json()
    truth = regions()[name]
    assert body["model"] == "vad"
    assert body["duration"] == pytest.approx(truth["duration"], abs=0.01)
    found = body["segments"]
    assert len(found) == len(truth["speech"]), found
    for segment, region in zip(found, truth["speech"], strict=True):
        assert segment["start"] == pytest.approx(region["start"], abs=TOLERANCE_S)
        assert segment["end"] == pytest.approx(region["end"], abs=TOLERANCE_S)


def test_tone_and_noise_are_not_speech(client: httpx.Client) -> None:
    body = post_vad(client, clip_bytes("distractors")).json()  # model defaults
    tone_and_noise = (5.6, 9.8)  # between the two phrases: tone, silence, noise burst
    for segment in body["segments"]:
        assert segment["end"] <= tone_and_noise[0] or segment["start"] >= tone_and_noise[1]


def test_model_alias_and_options_are_honoured(client: httpx.Client) -> None:
    strict = post_vad(client, clip_bytes("two_phrases"), model="silero-vad", threshold="0.99")
    loose = post_vad(client, clip_bytes("two_phrases"), model="vad", threshold="0.3")
    assert strict.status_code == loose.status_code == 200
    strict_speech = sum(s["end"] - s["start"] for s in strict.json()["segments"])
    loose_speech = sum(s["end"] - s["start"] for s in loose.json()["segments"])
    assert strict_speech < loose_speech


def test_concurrent_requests_are_batched(served, client: httpx.Client) -> None:
    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=served.base_url, timeout=60) as http:
            files = [{"file": ("c.flac", clip_bytes("short"))} for _ in range(24)]
            return await asyncio.gather(*(http.post("/v1/audio/vad", files=f) for f in files))

    responses = asyncio.run(burst())
    assert all(r.status_code == 200 for r in responses)
    assert len({r.text for r in responses}) == 1  # batching never changes the answer
    stats = client.get("/v1/models/instance:silero-vad").json()["details"]["stats"]
    assert stats["max_batch_size_seen"] > 1, stats


def _wav(seconds: float) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(np.zeros(int(seconds * 16000), dtype="<i2").tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content", "name"),
    [
        (b"", "empty.wav"),
        (_wav(1.0)[:30], "cut-in-header.wav"),
        (_wav(1.0)[: len(_wav(1.0)) // 2], "cut-in-data.wav"),
        (b"this is a text file, not audio\n" * 20, "notes.wav"),
    ],
)
def test_bad_uploads_are_400(client: httpx.Client, content: bytes, name: str) -> None:
    error = assert_error(post_vad(client, content, name), 400, "file")
    assert error["type"] == "invalid_request_error"


def test_upload_over_the_size_limit_is_413(served, client: httpx.Client) -> None:
    too_big = b"\0" * (served.config.server.limits.max_upload_bytes + 1)
    assert_error(post_vad(client, too_big, "big.wav"), 413, "file")


def test_audio_over_the_duration_limit_is_413(served, client: httpx.Client) -> None:
    seconds = served.config.server.limits.max_audio_seconds + 5
    flac = encode_audio(np.zeros(int(seconds * 24000), np.float32), input_rate=24000, fmt="flac")
    assert len(flac) < served.config.server.limits.max_upload_bytes
    error = assert_error(post_vad(client, flac), 413, "file")
    assert "seconds" in error["message"]


@pytest.mark.parametrize(
    ("form", "param"),
    [
        ({"threshold": "1.5"}, "threshold"),
        ({"threshold": "nan"}, "threshold"),
        ({"speech_pad_ms": "-3"}, "speech_pad_ms"),
        ({"max_speech_duration_s": "inf"}, "max_speech_duration_s"),
        ({"threshold": "0.3", "neg_threshold": "0.8"}, "neg_threshold"),
        ({"neg_threshold": "0.8"}, "neg_threshold"),  # above the model's threshold (0.5)
    ],
)
def test_bad_options_are_400(client: httpx.Client, form: dict, param: str) -> None:
    assert_error(post_vad(client, clip_bytes("short"), **form), 400, param)


def test_missing_file_is_400(client: httpx.Client) -> None:
    assert_error(client.post("/v1/audio/vad", data={"threshold": "0.5"}), 400, "file")


def test_unknown_model_is_404(client: httpx.Client) -> None:
    error = assert_error(post_vad(client, clip_bytes("short"), model="nope"), 404, "model")
    assert error["code"] == "model_not_found"
    assert "vad" in error["message"]
