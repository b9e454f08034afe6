"""Uploaded audio: decoded off the event loop, within the configured limits."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import UploadFile
from starlette.concurrency import run_in_threadpool

from harmonyspeech.audio import Audio, decode_audio
from harmonyspeech.config import LimitsConfig
from harmonyspeech.errors import InvalidRequestError

AUDIO_UPLOAD_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "content": {"multipart/form-data": {"encoding": {"file": {"contentType": "audio/*"}}}}
    }
}
"""``openapi_extra`` of a route whose multipart ``file`` parts are audio (FastAPI alone documents
them as opaque bytes, so clients and fuzzers cannot tell what belongs there)."""


async def read_audio(
    file: UploadFile, limits: LimitsConfig, *, sample_rate: int, max_seconds: float | None = None
) -> Audio:
    """Decode an upload to mono float32 at ``sample_rate``.

    Args:
        max_seconds: Longest accepted duration, when less than ``limits.max_audio_seconds`` (what
            is left of it for one of several files): decoding stops as soon as it is exceeded.

    Raises:
        InvalidRequestError: Empty, truncated or non-audio upload, or samples that are NaN or
            infinite (400).
        PayloadTooLargeError: Longer than the limit (413).
    """
    data = await file.read()
    limit = limits.max_audio_seconds if max_seconds is None else max_seconds
    return await run_in_threadpool(_decode_finite, data, sample_rate, limit)


def _decode_finite(data: bytes, sample_rate: int, max_seconds: float) -> Audio:
    audio = decode_audio(data, sample_rate=sample_rate, max_seconds=max_seconds)
    # Float formats (IEEE-float WAV, ...) can carry NaN and infinity, which poison every model.
    if not np.isfinite(audio.samples).all():
        raise InvalidRequestError(
            "file contains samples that are not finite numbers (NaN or infinity)", param="file"
        )
    return audio
