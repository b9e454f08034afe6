"""Uploaded audio: decoded off the event loop, within the configured limits."""

from __future__ import annotations

from fastapi import UploadFile
from starlette.concurrency import run_in_threadpool

from harmonyspeech.audio import Audio, decode_audio
from harmonyspeech.config import LimitsConfig


async def read_audio(file: UploadFile, limits: LimitsConfig, *, sample_rate: int) -> Audio:
    """Decode an upload to mono float32 at ``sample_rate``.

    Raises:
        InvalidRequestError: Empty, truncated or non-audio upload (400).
        PayloadTooLargeError: Longer than ``limits.max_audio_seconds`` (413).
    """
    data = await file.read()
    return await run_in_threadpool(
        decode_audio, data, sample_rate=sample_rate, max_seconds=limits.max_audio_seconds
    )
