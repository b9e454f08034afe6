"""``/v1/audio/speech`` and the voice listings through the official OpenAI SDK, against the real
local Ray Serve app with a tiny random MeloTTS checkpoint (so the audio is noise of the right
shape; what is checked is the protocol, the formats, the streaming and the batching)."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import openai
import pytest

from harmonyspeech.audio import decode_audio

TEXT = "Hello there. This is the second sentence, a little longer than the first! And a third."
SEED = {"seed": 7}
FORMATS = ["mp3", "opus", "aac", "flac", "wav", "pcm"]
CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


def speak(sdk: openai.OpenAI, fmt: str = "pcm", **extra: object) -> bytes:
    response = sdk.audio.speech.create(
        model="tts-1",
        voice="alloy",
        input=TEXT,
        response_format=fmt,
        extra_body={**SEED, **extra},
    )
    return response.content


@pytest.fixture(scope="module")
def pcm_duration(openai_client: openai.OpenAI) -> float:
    pcm = speak(openai_client, "pcm")
    assert len(pcm) % 2 == 0 and len(pcm) > 0
    return len(pcm) / (24000 * 2)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_decodes_to_the_expected_duration(
    openai_client: openai.OpenAI, fmt: str, pcm_duration: float
) -> None:
    raw = openai_client.audio.speech.with_raw_response.create(
        model="tts-1", voice="alloy", input=TEXT, response_format=fmt, extra_body=SEED
    )
    assert raw.headers["content-type"].startswith(CONTENT_TYPES[fmt])
    if fmt == "pcm":
        assert len(raw.content) == round(pcm_duration * 24000) * 2
        return
    audio = decode_audio(raw.content, sample_rate=24000)
    assert audio.duration == pytest.approx(pcm_duration, abs=0.1)


def test_mp3_is_the_default_format(served) -> None:
    body = {"model": "tts-1", "voice": "alloy", "input": "Hi."}
    response = httpx.post(f"{served.base_url}/v1/audio/speech", json=body, timeout=60)
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/mpeg"


def test_streamed_bytes_equal_the_buffered_file(openai_client: openai.OpenAI) -> None:
    with openai_client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="pcm", extra_body=SEED
    ) as response:
        chunks = list(response.iter_bytes())
    assert len(chunks) >= 1
    buffered = speak(openai_client, "pcm", stream=False)
    assert b"".join(chunks) == buffered


async def test_async_client_streams(async_openai_client: openai.AsyncOpenAI) -> None:
    async with async_openai_client.audio.speech.with_streaming_response.create(
        model="tts-1-hd", voice={"id": "echo"}, input=TEXT, response_format="wav"
    ) as response:
        data = b"".join([chunk async for chunk in response.iter_bytes()])
    assert data[:4] == b"RIFF"
    assert decode_audio(data, sample_rate=24000).duration > 0.5


def sse_events(openai_client: openai.OpenAI, fmt: str) -> list[dict]:
    with openai_client.audio.speech.with_streaming_response.create(
        model="tts-1",
        voice="alloy",
        input=TEXT,
        response_format=fmt,
        extra_body={**SEED, "stream_format": "sse"},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    return [json.loads(line.removeprefix("data: ")) for line in lines]


@pytest.mark.parametrize("fmt", ["pcm", "mp3"])
def test_sse_deltas_concatenate_to_the_same_audio(openai_client: openai.OpenAI, fmt: str) -> None:
    events = sse_events(openai_client, fmt)
    *deltas, done = events
    assert all(e["type"] == "speech.audio.delta" for e in deltas) and deltas
    assert done["type"] == "speech.audio.done"
    usage = done["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    audio = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert audio == speak(openai_client, fmt)


def test_voices_as_strings_objects_speakers_and_aliases(openai_client: openai.OpenAI) -> None:
    for voice in ("alloy", {"id": "alloy"}, "EN-US"):
        data = openai_client.audio.speech.create(
            model="tts-1", voice=voice, input="Same voice.", response_format="pcm", extra_body=SEED
        ).content
        assert data
    alloy = speak(openai_client, "pcm")
    en_us = openai_client.audio.speech.create(
        model="tts-1", voice="EN-US", input=TEXT, response_format="pcm", extra_body=SEED
    ).content
    assert alloy == en_us  # alloy is configured as EN-US


def test_unknown_fields_are_accepted(openai_client: openai.OpenAI) -> None:
    data = speak(openai_client, "pcm", lang_code="a", normalization_options={"x": 1})
    assert data == speak(openai_client, "pcm")


def test_speed_changes_the_length(openai_client: openai.OpenAI) -> None:
    normal = len(speak(openai_client, "pcm"))
    fast = openai_client.audio.speech.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="pcm", speed=2.0, extra_body=SEED
    ).content
    assert len(fast) < 0.75 * normal


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"input": "x" * 4097}, "input"),
        ({"input": "   "}, "input"),
        ({"speed": 5.0}, "speed"),
        ({"speed": 0.1}, "speed"),
        ({"voice": "nobody"}, "voice"),
        ({"response_format": "ogg"}, "response_format"),
        ({"speed": "1.5"}, "speed"),
        ({"extra_body": {"stream": "no"}}, "stream"),
    ],
)
def test_bad_requests_are_400_in_the_envelope(
    openai_client: openai.OpenAI, kwargs: dict, param: str
) -> None:
    request = {"model": "tts-1", "voice": "alloy", "input": "Hello.", **kwargs}
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.audio.speech.create(**request)
    assert info.value.body["param"] == param
    assert info.value.body["type"] == "invalid_request_error"


def test_unknown_model_is_404(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        openai_client.audio.speech.create(model="tts-9", voice="alloy", input="Hi.")
    assert "tts-1" in info.value.body["message"]


def synth_stats(client: httpx.Client) -> dict:
    return client.get("/v1/models/instance:melo-en").json()["details"]["stats"]


@pytest.mark.parametrize(("model", "speed"), [("tts-1", 1.0), ("tts-validated", 2.0)])
def test_punctuation_alone_is_a_pause_that_runs_no_model(
    openai_client: openai.OpenAI, client: httpx.Client, model: str, speed: float
) -> None:
    # Clients that speak text as it arrives send paragraphs such as "..." on their own.
    before = synth_stats(client)["items"]
    for stream_format in ("audio", "sse"):
        response = openai_client.audio.speech.create(
            model=model,
            voice="alloy",
            input="...",
            response_format="pcm",
            speed=speed,
            stream_format=stream_format,
        )
        if stream_format == "sse":
            lines = [line for line in response.text.splitlines() if line]
            events = [json.loads(line.removeprefix("data: ")) for line in lines]
            assert events[-1]["type"] == "speech.audio.done"
            pcm = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
        else:
            pcm = response.content
        assert pcm == bytes(2 * round(24000 * 0.05 / speed))  # the 50 ms / speed gap, silent
    assert synth_stats(client)["items"] == before


async def test_32_concurrent_requests_share_batches(async_openai_client, client) -> None:
    before = synth_stats(client)

    async def one(i: int) -> bytes:
        response = await async_openai_client.audio.speech.create(
            model="tts-1",
            voice="nova",
            input=f"Request number {i} says hello.",
            response_format="pcm",
        )
        return response.content

    results = await asyncio.gather(*(one(i) for i in range(32)))
    assert all(len(r) > 0 for r in results)
    after = synth_stats(client)
    assert after["items"] - before["items"] >= 32
    assert after["max_batch_size_seen"] > 1, after


async def test_a_disconnect_cancels_the_remaining_sentences(served, client) -> None:
    """A client that hangs up takes its queued sentences out of the synthesizer's queue."""
    before = synth_stats(client)["cancelled"]
    # ~15 sentence items; at a quarter speed each costs the synthesizer a batch of its own, so
    # most are still queued when the first one arrives (at full speed two share a batch, and a
    # fast machine could finish them all before the hang-up reaches the queue).
    text = " ".join(f"Sentence {i} of a long reading, which keeps going." for i in range(75))
    body = {
        "model": "tts-1",
        "voice": "alloy",
        "input": text,
        "response_format": "pcm",
        "speed": 0.25,
    }
    async with (
        httpx.AsyncClient(base_url=served.base_url, timeout=120) as http,
        http.stream("POST", "/v1/audio/speech", json=body) as response,
    ):
        assert response.status_code == 200
        await anext(response.aiter_bytes())  # the first sentence arrived; now hang up
    await wait_for_cancellations(client, before)


async def test_a_client_giving_up_on_a_buffered_response_cancels_its_work(served, client) -> None:
    """Not streamed, the audio only leaves once all of it exists; a client that times out
    before then must not leave its sentences queued."""
    before = synth_stats(client)["cancelled"]
    text = " ".join(f"Sentence {i} of a long reading, which keeps going." for i in range(75))
    # At a quarter speed each sentence costs the synthesizer a batch of its own.
    body = {"model": "tts-1", "voice": "alloy", "input": text, "speed": 0.25}
    async with httpx.AsyncClient(base_url=served.base_url, timeout=0.75) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post("/v1/audio/speech", json=body)
    await wait_for_cancellations(client, before)


async def wait_for_cancellations(client: httpx.Client, before: int) -> None:
    """The hang-up travels proxy → ingress → synthesizer; give it up to 10 s."""
    for _ in range(40):
        if synth_stats(client)["cancelled"] > before:
            return
        await asyncio.sleep(0.25)
    assert synth_stats(client)["cancelled"] > before


def test_voice_and_model_listings(client: httpx.Client) -> None:
    voices = client.get("/v1/audio/voices").json()["voices"]
    ids = {v["id"] for v in voices}
    assert {"alloy", "echo", "EN-US", "EN-BR"} <= ids
    assert all({"id", "name"} <= set(v) for v in voices)
    models = client.get("/v1/audio/models").json()["models"]
    assert {"tts", "tts-1", "tts-1-hd"} <= {m["id"] for m in models}
    card = client.get("/v1/models/tts").json()
    assert "alloy" in card["details"]["voices"]
    assert client.get("/v1/audio/voices", params={"model": "tts-1"}).status_code == 200
    assert client.get("/v1/audio/voices", params={"model": "whisper-1"}).status_code == 404
