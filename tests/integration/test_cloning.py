"""Voice cloning through the real Ray Serve app: VAD -> embedding -> MeloTTS -> conversion."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from harmonyspeech.audio import decode_audio
from tests.unit.vad_clips import clip_bytes

UNKNOWN = "voice_0000000000000000"


def _clone(client: httpx.Client, *clips: str, name: str = "Ada") -> httpx.Response:
    files = [("file", (f"{clip}.flac", clip_bytes(clip), "audio/flac")) for clip in clips]
    return client.post("/v1/audio/voices", files=files, data={"name": name, "consent": "self"})


@pytest.fixture(scope="module")
def voice_id(served) -> str:
    with httpx.Client(base_url=served.base_url, timeout=60) as client:
        response = _clone(client, "two_phrases", "distractors")
    assert response.status_code == 200, response.text
    return response.json()["id"]


def test_a_voice_is_cloned_from_the_speech_of_its_references(client, voice_id: str) -> None:
    voice = client.get(f"/v1/audio/voices/{voice_id}").json()
    assert voice["name"] == "Ada" and voice["type"] == "cloned" and voice["consent"] == "self"
    # VAD keeps the speech of both clips (about 5.5 s each), not their silence and noise.
    assert 8 < voice["speech_seconds"] < 16
    assert voice["model"] == "openvoice" and "tts" in voice["models"]
    listed = client.get("/v1/audio/voices").json()["voices"]
    assert voice_id in [v["id"] for v in listed]
    assert {"alloy", "EN-US"} <= {v["id"] for v in listed}
    embedding = client.get(f"/v1/audio/voices/{voice_id}/embedding").json()
    assert embedding["dimensions"] == 256 == len(embedding["embedding"])


def test_raw_embeddings_without_storing_a_voice(client) -> None:
    files = [("file", ("a.flac", clip_bytes("two_phrases"), "audio/flac"))]
    before = len(client.get("/v1/audio/voices").json()["voices"])
    body = client.post("/v1/audio/embeddings", files=files).json()
    assert body["model"] == "clone" and len(body["data"][0]["embedding"]) == 256
    assert len(client.get("/v1/audio/voices").json()["voices"]) == before


def test_speech_in_a_cloned_voice_streamed_and_not(openai_client, voice_id: str) -> None:
    text = "A cloned voice speaks. It streams sentence by sentence."
    whole = openai_client.audio.speech.create(
        model="tts-1", voice=voice_id, input=text, response_format="wav",
        extra_body={"stream": False, "seed": 3},
    )  # fmt: skip
    audio = decode_audio(whole.content, sample_rate=24000)
    assert audio.duration > 0.5
    with openai_client.audio.speech.with_streaming_response.create(
        model="tts-1", voice=voice_id, input=text, response_format="pcm", extra_body={"seed": 3}
    ) as response:
        streamed = b"".join(response.iter_bytes())
    assert abs(len(streamed) / 48000 - audio.duration) < 0.05
    base = openai_client.audio.speech.create(
        model="tts-1", voice="EN-US", input=text, response_format="pcm",
        extra_body={"stream": False, "seed": 3},
    )  # fmt: skip
    same_length = min(len(base.content), len(streamed))
    assert base.content[:same_length] != streamed[:same_length], "the voice must be converted"


def test_punctuation_alone_in_a_cloned_voice_is_a_pause_left_unconverted(
    openai_client, client, voice_id: str
) -> None:
    converted = client.get("/v1/models/instance:openvoice").json()["details"]["stats"]["items"]
    pause = openai_client.audio.speech.create(
        model="tts-1", voice=voice_id, input="...", response_format="pcm"
    )
    assert pause.content == bytes(2 * 1200)  # 50 ms of silence at 24 kHz
    stats = client.get("/v1/models/instance:openvoice").json()["details"]["stats"]
    assert stats["items"] == converted


def test_voice_given_as_an_object_and_unknown_voices(client, voice_id: str) -> None:
    body = {"model": "tts-1", "input": "Hi there.", "voice": {"id": voice_id}, "stream": False}
    assert client.post("/v1/audio/speech", json=body).status_code == 200
    missing = client.post("/v1/audio/speech", json={**body, "voice": UNKNOWN})
    assert missing.status_code == 404 and UNKNOWN in missing.json()["error"]["message"]
    assert client.get(f"/v1/audio/voices/{UNKNOWN}").status_code == 404
    assert client.get("/v1/audio/voices/alloy").json()["speaker"] == "EN-US"
    assert client.get("/v1/audio/voices/nobody").status_code == 404
    assert client.delete(f"/v1/audio/voices/{UNKNOWN}").status_code == 404
    # A built-in voice exists, but only cloned ones can be deleted or have an embedding.
    for refused in (
        client.delete("/v1/audio/voices/alloy"),
        client.get("/v1/audio/voices/alloy/embedding"),
    ):
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "voice_id"
        assert "'alloy' is a built-in voice" in refused.json()["error"]["message"]
    assert client.get("/v1/audio/voices/alloy").status_code == 200
    no_convert = client.post("/v1/audio/speech", json={**body, "model": "tts-validated"})
    assert no_convert.status_code == 400
    assert "cannot speak cloned voices" in no_convert.json()["error"]["message"]


def test_bad_references_are_client_errors(client) -> None:
    short = _clone(client, "short")
    assert short.status_code == 400
    message = short.json()["error"]["message"]
    assert "s of speech; at least 3.0 s is needed" in message
    garbage = client.post(
        "/v1/audio/voices", files=[("file", ("x.wav", b"RIFF not audio"))], data={"name": "x"}
    )
    assert garbage.status_code == 400 and garbage.json()["error"]["param"] == "file"
    unnamed = client.post("/v1/audio/voices", files=[("file", ("a.flac", clip_bytes("short")))])
    assert unnamed.status_code == 400
    no_file = client.post("/v1/audio/voices", data={"name": "x"})
    assert no_file.status_code == 400 and no_file.json()["error"]["type"] == "invalid_request_error"
    # Each clip is within the 60 s limit of the test config; five of them together are not.
    many = [("file", (f"{n}.flac", clip_bytes("distractors"))) for n in range(5)]
    too_long = client.post("/v1/audio/voices", files=many, data={"name": "x"})
    assert too_long.status_code == 413 and "together" in too_long.json()["error"]["message"]


def test_deleting_a_voice_in_use_lets_its_requests_finish(served, client) -> None:
    doomed = _clone(client, "two_phrases", name="Doomed").json()["id"]
    text = " ".join(f"Sentence number {n} is spoken here." for n in range(6))
    body = {"model": "tts-1", "input": text, "voice": doomed, "response_format": "pcm"}
    with client.stream("POST", "/v1/audio/speech", json=body) as response:
        assert response.status_code == 200
        chunks = response.iter_bytes()
        first = next(chunks)
        assert client.delete(f"/v1/audio/voices/{doomed}").json()["deleted"] is True
        rest = b"".join(chunks)
    assert len(first) + len(rest) > 48000
    assert client.get(f"/v1/audio/voices/{doomed}").status_code == 404
    assert client.post("/v1/audio/speech", json=body).status_code == 404


async def test_concurrent_cloned_voice_requests_share_conversion_batches(
    served, voice_id: str
) -> None:
    async with httpx.AsyncClient(base_url=served.base_url, timeout=120) as http:
        body = {"model": "tts-1", "voice": voice_id, "response_format": "pcm", "stream": False}
        responses = await asyncio.gather(
            *(
                http.post("/v1/audio/speech", json={**body, "input": f"Request {n} talks."})
                for n in range(8)
            )
        )
        assert all(r.status_code == 200 and r.content for r in responses)
        stats = (await http.get("/v1/models/instance:openvoice")).json()["details"]["stats"]
    assert stats["max_batch_size_seen"] > 1
    assert all(len(r.content) / 48000 > 0.3 for r in responses)  # 24 kHz s16le
