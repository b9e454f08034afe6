"""``POST /v1/audio/speech``: OpenAI-compatible text to speech, streamed as it is synthesised.

The request's text is split into sentence items that the synthesizer's scheduler batches with
other requests' items; item *i* is encoded and sent as soon as items before it are out. Encoding
happens here, once, at the HTTP edge.
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from harmonyspeech.api import sse
from harmonyspeech.api.demo import random_weights_headers
from harmonyspeech.api.deps import get_runtime
from harmonyspeech.api.metrics import record_validation
from harmonyspeech.api.protocol import SpeechRequest
from harmonyspeech.api.ratelimit import charge_audio_seconds
from harmonyspeech.api.streaming import StreamBrokenOff, started
from harmonyspeech.audio import CONTENT_TYPES, StreamEncoder
from harmonyspeech.errors import HarmonySpeechError, quoted
from harmonyspeech.pipelines.runtime import EngineRuntime
from harmonyspeech.pipelines.speech import SpeechItem, encoded_file, retries
from harmonyspeech.pipelines.validation import Score

logger = logging.getLogger(__name__)
router = APIRouter()

SCORE_HEADERS = {"wer": "X-HarmonySpeech-WER", "cer": "X-HarmonySpeech-CER"}
"""Validation score header of a non-streamed response, by metric (pipelines with ``validate``)."""
AUDIO_TOKEN_S = 0.05
"""Audio length counted as one output token in SSE usage (an approximation; there are no real
audio tokens)."""


# https://platform.openai.com/docs/api-reference/audio/createSpeech
@router.post("/v1/audio/speech", response_model=None)
async def create_speech(
    body: SpeechRequest, runtime: Annotated[EngineRuntime, Depends(get_runtime)]
) -> Response:
    if body.unknown_fields:
        logger.info("speech request: ignoring unknown fields %s", _quoted(body.unknown_fields))
    limits = runtime.config.server.limits
    body.check_input(limits.max_input_chars)
    pipeline = runtime.catalog.resolve(body.model, produces="speech")
    ctx = await runtime.speech_context(
        pipeline,
        body.synthesis_request(),
        timeout_s=limits.speech_timeout_s(len(body.input), body.speed),
        streamed=body.stream or body.stream_format == "sse",
    )
    headers = await random_weights_headers(runtime, pipeline, ctx)
    # Wait for the first sentence, so a request that fails before any audio exists gets a
    # proper error status instead of a broken 200 stream.
    items = RecordedItems(pipeline.name, await started(runtime.runner.stream(pipeline, ctx)))
    fmt = body.response_format
    if body.stream_format == "sse":
        events = _sse_events(items, fmt, body.input)
        return StreamingResponse(
            events, media_type=sse.MEDIA_TYPE, headers={**sse.HEADERS, **headers}
        )
    if not body.stream:
        content = await run_in_threadpool(encoded_file, [item async for item in items], fmt)
        headers.update(_score_header(items.score))
        return Response(content, media_type=CONTENT_TYPES[fmt], headers=headers)
    return StreamingResponse(
        _audio_bytes(items, fmt), media_type=CONTENT_TYPES[fmt], headers=headers
    )


class RecordedItems:
    """The request's items as they stream by; charges their audio seconds to the client's rate
    limit and exports the validation score once all are out."""

    def __init__(self, pipeline: str, items: AsyncIterator[SpeechItem]):
        self._pipeline, self._items = pipeline, items
        self.seen: list[SpeechItem] = []
        self.score: Score | None = None

    def __aiter__(self) -> RecordedItems:
        return self

    async def __anext__(self) -> SpeechItem:
        try:
            item = await self._items.__anext__()
        except StopAsyncIteration:
            self.score = record_validation(self._pipeline, self.seen)
            raise
        self.seen.append(item)
        if item.audio is not None:
            await charge_audio_seconds(item.audio.duration)
        return item


LOGGED_NAMES = 8
"""Most client-chosen names one log line quotes."""


def _quoted(names: list[str]) -> str:
    """Client-chosen names for a log line: each quoted and cut short (``quoted``), and only the
    first few."""
    shown = ", ".join(quoted(name, 64) for name in names[:LOGGED_NAMES])
    more = len(names) - LOGGED_NAMES
    return f"{shown} and {more} more" if more > 0 else shown


def _score_header(score: Score | None) -> dict[str, str]:
    return {SCORE_HEADERS[score.metric]: f"{score.rate:.4f}"} if score else {}


async def _audio_bytes(items: AsyncIterator[SpeechItem], fmt: str) -> AsyncIterator[bytes]:
    try:
        async for chunk, _ in _encoded(items, fmt):
            if chunk:
                yield chunk
    except HarmonySpeechError as exc:
        logger.warning("speech stream broken off after its start: %s", exc.message)
        raise StreamBrokenOff(exc.message) from exc


async def _sse_events(items: RecordedItems, fmt: str, text: str) -> AsyncIterator[bytes]:
    seconds = 0.0
    try:
        async for chunk, duration in _encoded(items, fmt):
            seconds += duration
            if chunk:
                payload = base64.b64encode(chunk).decode("ascii")
                yield sse.sse_frame({"type": "speech.audio.delta", "audio": payload})
    except HarmonySpeechError as exc:
        yield sse.sse_error(exc)
        return
    output_tokens = math.ceil(seconds / AUDIO_TOKEN_S)
    usage = {
        "input_tokens": len(text),
        "output_tokens": output_tokens,
        "total_tokens": len(text) + output_tokens,
    }
    done: dict[str, object] = {"type": "speech.audio.done", "usage": usage}
    if items.score is not None:
        done["validation"] = _validation_field(items.score, items.seen)
    yield sse.sse_frame(done)


def _validation_field(score: Score, items: list[SpeechItem]) -> dict[str, object]:
    return {
        "metric": score.metric,
        "score": round(score.rate, 4),
        "transcript": score.transcript,
        "retries": retries(items),
    }


async def _encoded(
    items: AsyncIterator[SpeechItem], fmt: str
) -> AsyncIterator[tuple[bytes, float]]:
    """Encoded bytes per item (and the final flush), with each item's duration."""
    encoder: StreamEncoder | None = None
    async for item in items:
        assert item.audio is not None
        if encoder is None:
            encoder = StreamEncoder(fmt, input_rate=item.audio.sample_rate)
        yield await run_in_threadpool(encoder.encode, item.audio.samples), item.audio.duration
    if encoder is not None:
        yield await run_in_threadpool(encoder.finish), 0.0
