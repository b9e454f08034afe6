"""OpenAI transcription and translation endpoints through the official SDK.

The served Whisper has random (toy) weights, so the text is gibberish; what is checked is the
protocol, the formats, the timestamps and that batching never changes a result.
"""

from __future__ import annotations

import asyncio
import json
import re

import openai
import pytest
from openai.types.audio import TranscriptionTextDoneEvent

from tests.unit.vad_clips import clip_bytes, regions

CLIP = "two_phrases"


def upload(name: str = CLIP) -> tuple[str, bytes]:
    return (f"{name}.flac", clip_bytes(name))


def test_json_is_the_default(openai_client) -> None:
    result = openai_client.audio.transcriptions.create(model="whisper-1", file=upload())
    assert isinstance(result.text, str) and result.text


def test_text_format_is_plain_text(openai_client) -> None:
    text = openai_client.audio.transcriptions.create(
        model="whisper-1", file=upload(), response_format="text"
    )
    json_text = openai_client.audio.transcriptions.create(model="whisper-1", file=upload()).text
    assert isinstance(text, str) and text.strip() == json_text


SRT_BLOCK = re.compile(r"(\d+)\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n(.*)")
VTT_CUE = re.compile(r"(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})\n(.*)")


def seconds(clock: str) -> float:
    hours, minutes, rest = clock.replace(",", ".").split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(rest)


def test_srt_is_well_formed(openai_client) -> None:
    srt = openai_client.audio.transcriptions.create(
        model="whisper-1", file=upload(), response_format="srt"
    )
    blocks = [b for b in srt.strip().split("\n\n") if b]
    assert blocks
    previous_end = 0.0
    for number, block in enumerate(blocks, start=1):
        match = SRT_BLOCK.fullmatch(block)
        assert match, block
        assert int(match[1]) == number
        start, end = seconds(match[2]), seconds(match[3])
        assert previous_end <= start <= end <= regions()[CLIP]["duration"] + 1
        previous_end = end


def test_vtt_is_well_formed(openai_client) -> None:
    vtt = openai_client.audio.transcriptions.create(
        model="whisper-1", file=upload(), response_format="vtt"
    )
    header, *cues = vtt.strip().split("\n\n")
    assert header == "WEBVTT" and cues
    for cue in cues:
        match = VTT_CUE.fullmatch(cue)
        assert match, cue
        assert seconds(match[1]) <= seconds(match[2])


def test_verbose_json_with_word_timestamps(openai_client) -> None:
    result = openai_client.audio.transcriptions.create(
        model="whisper-1",
        file=upload(),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        language="en",
    )
    assert result.language == "english"
    assert result.duration == pytest.approx(regions()[CLIP]["duration"], abs=0.01)
    assert result.segments and result.words
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)
    assert all(w.start <= w.end for w in result.words)
    assert [s.start for s in result.segments] == sorted(s.start for s in result.segments)
    assert "".join(s.text for s in result.segments).strip() == result.text


def test_streaming_sends_deltas_then_done(openai_client) -> None:
    stream = openai_client.audio.transcriptions.create(
        model="gpt-4o-transcribe", file=upload(), stream=True
    )
    events = list(stream)
    assert [e.type for e in events][-1] == "transcript.text.done"
    # The SDK builds stream events without validating them; strict clients do validate.
    TranscriptionTextDoneEvent.model_validate(events[-1].to_dict())
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert deltas and "".join(deltas).strip() == events[-1].text
    plain = openai_client.audio.transcriptions.create(model="whisper-1", file=upload())
    assert events[-1].text == plain.text


def first_window_frame(openai_client, chunking: object) -> int:
    result = openai_client.audio.transcriptions.create(
        model="whisper-1",
        file=upload(),
        response_format="verbose_json",
        chunking_strategy=chunking,
    )
    return result.segments[0].seek


def test_chunking_strategy_sets_the_vad_stage(openai_client) -> None:
    # The first window starts where VAD found the first speech, less the padding kept before
    # it (the pipeline's own is 200 ms); seek counts 10 ms frames.
    speech = round(regions()[CLIP]["speech"][0]["start"] * 100)
    unpadded = first_window_frame(openai_client, {"type": "server_vad", "prefix_padding_ms": 0})
    auto = first_window_frame(openai_client, "auto")
    padded = first_window_frame(openai_client, {"type": "server_vad", "prefix_padding_ms": 600})
    assert abs(unpadded - speech) <= 5
    assert auto == pytest.approx(unpadded - 20, abs=2)
    assert padded == pytest.approx(unpadded - 60, abs=2)
    # Raw clients may send the object as JSON in one field.
    as_json = json.dumps({"type": "server_vad", "prefix_padding_ms": 600})
    assert first_window_frame(openai_client, as_json) == padded


@pytest.mark.parametrize(
    ("chunking", "model", "complaint"),
    [
        ({"type": "semantic_vad"}, "whisper-1", "must be 'auto' or an object"),
        ("server_vad", "whisper-1", "must be 'auto' or an object"),
        ('{"threshold": 0.5}', "whisper-1", "must be 'auto' or an object"),
        ({"type": "server_vad", "eagerness": "low"}, "whisper-1", "got eagerness"),
        ({"type": "server_vad", "threshold": 1.5}, "whisper-1", "threshold"),
        ({"type": "server_vad"}, "whisper-plain", "has no VAD stage"),
    ],
)
def test_bad_chunking_strategies_are_client_errors(
    openai_client, chunking: dict | str, model: str, complaint: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.audio.transcriptions.create(
            model=model, file=upload(), chunking_strategy=chunking
        )
    error = info.value.body
    assert error["param"] == "chunking_strategy" and complaint in error["message"]


def test_translation(openai_client) -> None:
    result = openai_client.audio.translations.create(model="whisper-1", file=upload())
    assert isinstance(result.text, str)
    verbose = openai_client.audio.translations.create(
        model="whisper-1", file=upload(), response_format="verbose_json"
    )
    assert verbose.text == result.text


async def test_concurrent_requests_batch_and_match_sequential(async_openai_client, client):
    names = [n for n in regions() for _ in range(4)]

    async def transcribe(name: str) -> str:
        result = await async_openai_client.audio.transcriptions.create(
            model="whisper-plain", file=upload(name), language="en"
        )
        return result.text

    together = await asyncio.gather(*(transcribe(n) for n in names))
    one_by_one = [await transcribe(n) for n in regions()]
    expected = {n: t for n, t in zip(regions(), one_by_one, strict=True)}
    assert together == [expected[n] for n in names]
    stats = client.get("/v1/models/instance:whisper").json()["details"]["stats"]
    assert stats["max_batch_size_seen"] > 1, stats


def test_bad_uploads_map_to_sdk_errors(openai_client) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.audio.transcriptions.create(
            model="whisper-1", file=("notes.wav", b"just some text, not audio")
        )
    assert info.value.body["param"] == "file"
    with pytest.raises(openai.NotFoundError):
        openai_client.audio.transcriptions.create(model="whisper-9", file=upload())
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.audio.transcriptions.create(model="whisper-1", file=upload(), language="xx")
    assert info.value.body["param"] == "language"
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.audio.transcriptions.create(
            model="whisper-1", file=upload(), timestamp_granularities=["word"]
        )
    assert info.value.body["param"] == "timestamp_granularities"


def test_upload_over_limit_is_413(served, openai_client) -> None:
    too_big = b"\0" * (served.config.server.limits.max_upload_bytes + 10)
    with pytest.raises(openai.APIStatusError) as info:
        openai_client.audio.transcriptions.create(model="whisper-1", file=("big.wav", too_big))
    assert info.value.status_code == 413


def test_vad_endpoint_does_not_accept_a_transcription_pipeline(client) -> None:
    response = client.post("/v1/audio/vad", files={"file": upload()}, data={"model": "whisper-1"})
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "model"
