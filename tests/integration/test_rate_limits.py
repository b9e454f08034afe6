"""Per-key rate limits through the HTTP API, with the OpenAI SDK as the client.

The app runs in-process over ``LocalEngine`` (real models, tiny weights, no Ray). Keys come from
the config and from a keys file with a label; limits from ``server.rate_limits``. Each test gets
a fresh app, so fresh buckets. The Redis cases build two apps over one ``redis-server``: two
ingress replicas.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI

from harmonyspeech.api.app import create_app
from harmonyspeech.api.auth import hash_key
from harmonyspeech.config import EngineConfig, load_config
from harmonyspeech.pipelines.runtime import EngineRuntime, LocalEngine
from tests.conftest import TinyWeights, served_config_data
from tests.helpers import RedisServer, free_port
from tests.unit.vad_clips import clip_bytes, regions

KEY_A = "sk-rate-alpha-0123456789"
KEY_B = "sk-rate-beta-0123456789"
KEY_AUDIO = "sk-rate-audio-0123456789"
"""Unlimited requests, 1 audio second per minute (keys file, label ``audio``)."""
KEY_SPEECH = "sk-rate-speech-0123456789"
"""Unlimited requests, 0.1 audio second per minute (keys file, label ``speech``)."""
RPM = 3
SHORT_S: float = regions()["short"]["duration"]
"""Length of the ``short`` VAD clip (2.2 s)."""
PCM_RATE = 24000


@pytest.fixture(scope="module")
def config(tiny_weights: TinyWeights, tmp_path_factory: pytest.TempPathFactory) -> EngineConfig:
    keys_file = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys_file.write_text(
        f"# rate-limit test keys\n{hash_key(KEY_AUDIO)} audio\n{hash_key(KEY_SPEECH)} speech\n"
    )
    data = served_config_data(tiny_weights)
    data["server"]["auth"]["api_key_hashes"] = [hash_key(KEY_A), hash_key(KEY_B)]
    data["server"]["auth"]["api_keys_file"] = str(keys_file)
    data["server"]["rate_limits"] = {
        "requests_per_minute": RPM,
        "overrides": {
            "audio": {"requests_per_minute": None, "audio_seconds_per_minute": 1.0},
            "speech": {"requests_per_minute": None, "audio_seconds_per_minute": 0.1},
        },
    }
    return load_config(data)


@pytest.fixture(scope="module")
def engine(config: EngineConfig) -> Iterator[LocalEngine]:
    with LocalEngine(config) as local:
        yield local


@pytest.fixture
async def app(engine: LocalEngine) -> AsyncIterator[FastAPI]:
    built = create_app(engine.runtime)
    yield built
    await built.state.rate_limiter.aclose()


def transport(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def sdk(app: FastAPI, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url="http://test/v1", api_key=key, max_retries=0, http_client=transport(app)
    )


def retry_after(exc: openai.APIStatusError) -> int:
    return int(exc.response.headers["retry-after"])


async def exhaust(client: openai.AsyncOpenAI, times: int = RPM) -> None:
    for _ in range(times):
        await client.models.list()


async def test_over_the_limit_is_an_openai_rate_limit_error(app: FastAPI) -> None:
    client = sdk(app, KEY_A)
    await exhaust(client)
    with pytest.raises(openai.RateLimitError) as info:
        await client.models.list()
    error = info.value
    assert error.status_code == 429
    assert 1 <= retry_after(error) <= 60 / RPM  # a token comes back every 20 s
    assert error.code == "rate_limit_exceeded" and error.type == "rate_limit_error"
    envelope = error.response.json()
    assert set(envelope["error"]) == {"message", "type", "param", "code"}
    assert f"requests ({RPM} per minute)" in envelope["error"]["message"]
    # Refusals take no token and keep refusing (the SDK would wait Retry-After between).
    with pytest.raises(openai.RateLimitError):
        await client.models.list()


async def test_one_key_limited_does_not_limit_another(app: FastAPI) -> None:
    a, b = sdk(app, KEY_A), sdk(app, KEY_B)
    await exhaust(a)
    with pytest.raises(openai.RateLimitError):
        await a.models.list()
    await exhaust(b)  # B has its own bucket
    unlimited = sdk(app, KEY_AUDIO)  # override: no request limit
    await exhaust(unlimited, times=3 * RPM)


async def test_health_and_metrics_stay_unlimited(app: FastAPI) -> None:
    await exhaust(sdk(app, KEY_A))
    async with transport(app) as http:
        headers = {"Authorization": f"Bearer {KEY_A}"}
        assert (await http.get("/v1/models", headers=headers)).status_code == 429
        for _ in range(2 * RPM):
            for path in ("/health", "/ready", "/", "/metrics"):
                assert (await http.get(path, headers=headers)).status_code == 200, path


async def test_wrong_key_is_refused_before_counting(app: FastAPI) -> None:
    with pytest.raises(openai.AuthenticationError):
        await sdk(app, "sk-unknown").models.list()
    await exhaust(sdk(app, KEY_A))  # the failed attempt cost nobody a token


async def test_transcription_upload_charges_audio_seconds(app: FastAPI) -> None:
    client = sdk(app, KEY_AUDIO)
    await client.audio.transcriptions.create(
        model="whisper-1", file=("short.flac", clip_bytes("short"))
    )
    with pytest.raises(openai.RateLimitError) as info:
        await client.models.list()
    assert "audio seconds (1 per minute)" in info.value.message
    # Balance 1 - 2.23 s, refilled at 1 s per minute: about 74 s until it is above zero.
    expected = math.ceil((SHORT_S - 1.0) * 60)
    assert expected - 3 <= retry_after(info.value) <= expected


async def test_vad_upload_charges_audio_seconds(app: FastAPI) -> None:
    async with transport(app) as http:
        headers = {"Authorization": f"Bearer {KEY_AUDIO}"}
        files = {"file": ("short.flac", clip_bytes("short"))}
        first = await http.post("/v1/audio/vad", files=files, headers=headers)
        assert first.status_code == 200
        second = await http.post("/v1/audio/vad", files=files, headers=headers)
        assert second.status_code == 429
        assert second.json()["error"]["type"] == "rate_limit_error"
        assert int(second.headers["retry-after"]) > 60


@pytest.mark.parametrize("stream", [False, True])
async def test_speech_charges_the_seconds_it_produced(app: FastAPI, stream: bool) -> None:
    client = sdk(app, KEY_SPEECH)
    async with client.audio.speech.with_streaming_response.create(
        model="tts-1",
        voice="alloy",
        input="Hello there. How are you?",
        response_format="pcm",
        extra_body={"stream": stream},
    ) as response:
        pcm = await response.read()
    produced = len(pcm) / (2 * PCM_RATE)
    assert produced > 0.2
    with pytest.raises(openai.RateLimitError) as info:
        await client.models.list()
    # Balance 0.1 - produced, refilled at 0.1 s per minute (600 s per audio second).
    expected = (produced - 0.1) * 600
    assert abs(retry_after(info.value) - expected) <= 0.01 * 600


# --- Redis: two ingress replicas, and Redis unreachable ----------------------------------------


def with_rate_limits(engine: LocalEngine, **limits: Any) -> FastAPI:
    """An app over the same workers with other rate limits (what another replica builds)."""
    data = engine.config.model_dump()
    data["server"]["rate_limits"] = {"requests_per_minute": RPM, **limits}
    return create_app(EngineRuntime(load_config(data), engine.runtime.clients))


async def test_two_replicas_on_one_redis_share_the_limit(
    engine: LocalEngine, redis_server: RedisServer
) -> None:
    shared = {"backend": "redis", "redis_url": redis_server.url}
    shared["redis_prefix"] = f"test:{uuid.uuid4().hex}"
    one, two = with_rate_limits(engine, **shared), with_rate_limits(engine, **shared)
    try:
        a1, a2 = sdk(one, KEY_A), sdk(two, KEY_A)
        await a1.models.list()
        await a2.models.list()
        await a1.models.list()
        for client in (a2, a1):
            with pytest.raises(openai.RateLimitError) as info:
                await client.models.list()
            assert 1 <= retry_after(info.value) <= 60 / RPM
        await exhaust(sdk(two, KEY_B))
    finally:
        await one.state.rate_limiter.aclose()
        await two.state.rate_limiter.aclose()


async def test_unreachable_redis_is_a_clean_503(engine: LocalEngine, tmp_path: Path) -> None:
    pytest.importorskip("redis")
    dead = f"redis://127.0.0.1:{free_port()}/0"
    app = with_rate_limits(engine, backend="redis", redis_url=dead, redis_timeout_s=1)
    try:
        with pytest.raises(openai.InternalServerError) as info:
            await sdk(app, KEY_A).models.list()
        error = info.value
        assert error.status_code == 503 and retry_after(error) == 5
        assert error.code == "rate_limiter_unavailable"
        async with transport(app) as http:
            assert (await http.get("/health")).status_code == 200
    finally:
        await app.state.rate_limiter.aclose()
