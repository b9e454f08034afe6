"""Cloning references: several uploaded files are decoded within one duration limit together."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
from fastapi import UploadFile

from harmonyspeech.api.routes.voices import (
    CLONE_DECODE_RATE,
    MAX_REFERENCE_FILES,
    REFERENCE_GAP_S,
    decode_references,
)
from harmonyspeech.audio import encode_audio
from harmonyspeech.config import LimitsConfig
from harmonyspeech.errors import InvalidRequestError, PayloadTooLargeError

LIMITS = LimitsConfig(max_audio_seconds=60)


def silence(seconds: float) -> bytes:
    """FLAC of silence: a few kilobytes, however long."""
    return encode_audio(np.zeros(int(seconds * 8000), np.float32), input_rate=8000, fmt="flac")


def uploads(data: bytes, count: int) -> list[UploadFile]:
    return [UploadFile(io.BytesIO(data), filename=f"{n}.flac") for n in range(count)]


async def test_references_are_joined_with_a_gap() -> None:
    audio = await decode_references(uploads(silence(5.0), 3), LIMITS)
    assert audio.sample_rate == CLONE_DECODE_RATE
    assert audio.duration == pytest.approx(3 * 5.0 + 2 * REFERENCE_GAP_S, abs=0.05)


async def test_files_over_the_limit_together_stop_decoding_at_the_limit() -> None:
    # Twelve 50 s files of silence are 600 s of samples (53 MB at the decode rate), each small
    # enough to upload: the second one used to be decoded whole, and every one after it.
    files = uploads(silence(50.0), 12)
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLargeError, match="together") as refused:
            await decode_references(files, LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.param == "file"
    one_file = 50.0 * CLONE_DECODE_RATE * 4
    assert peak < 4 * one_file


async def test_one_file_over_the_limit_keeps_its_own_message() -> None:
    with pytest.raises(PayloadTooLargeError, match="longer than the limit of 60 seconds"):
        await decode_references(uploads(silence(61.0), 1), LIMITS)


async def test_the_number_of_files_is_bounded() -> None:
    # Each file costs a decoder, however short: a request cannot bring a thousand.
    with pytest.raises(InvalidRequestError, match=f"at most {MAX_REFERENCE_FILES}") as refused:
        await decode_references(uploads(silence(0.5), MAX_REFERENCE_FILES + 1), LIMITS)
    assert refused.value.param == "file"
    audio = await decode_references(uploads(silence(0.5), MAX_REFERENCE_FILES), LIMITS)
    assert audio.duration > MAX_REFERENCE_FILES * 0.5
