"""Decoding uploads (any container FFmpeg can demux) to mono float32 at a requested rate.

A user's bad upload is always an ``InvalidRequestError`` (400), or a ``PayloadTooLargeError``
(413) when it is too long; no PyAV exception leaks out of ``decode_audio``.
"""

from __future__ import annotations

import io
import logging
import struct
from typing import Any

import av
import numpy as np
from av.error import FFmpegError

from harmonyspeech.audio.core import Audio, check_rate, frames_to_array
from harmonyspeech.errors import HarmonySpeechError, InvalidRequestError, PayloadTooLargeError

logger = logging.getLogger(__name__)

# RIFF size fields that writers use when the length is not known (streams).
_WAV_UNKNOWN_SIZES = frozenset({0, 0xFFFFFFFF})


def decode_audio(data: bytes, *, sample_rate: int, max_seconds: float | None = None) -> Audio:
    """Decode an uploaded audio file to mono float32 at ``sample_rate``.

    Accepts anything FFmpeg can demux and decode (wav, mp3, flac, ogg/vorbis, ogg/opus,
    webm/opus, m4a/aac, ...). Multi-channel audio is downmixed by averaging the channels.

    Args:
        data: The raw bytes of the upload.
        sample_rate: Sample rate of the returned audio.
        max_seconds: Longest accepted duration; decoding stops as soon as it is exceeded.

    Returns:
        The decoded clip.

    Raises:
        InvalidRequestError: The bytes are empty, not audio, truncated or undecodable
            (``param="file"``).
        PayloadTooLargeError: The audio is longer than ``max_seconds`` (``param="file"``).
    """
    check_rate("sample_rate", sample_rate)
    if not data:
        raise InvalidRequestError("empty file", param="file")
    if not isinstance(data, bytes):
        data = bytes(data)
    _check_wav_complete(data)
    try:
        samples = _decode(data, sample_rate, max_seconds)
    except (HarmonySpeechError, MemoryError):
        raise
    except Exception as exc:
        # Malformed input can surface as any of FFmpegError, ValueError, EOFError, OSError, ...
        # and all of them are the client's problem, not ours.
        logger.debug("audio decode failed", exc_info=True)
        raise InvalidRequestError(
            f"could not decode audio: {_describe(exc)}", param="file"
        ) from exc
    if samples.size == 0:
        raise InvalidRequestError("file contains no audio samples", param="file")
    return Audio(samples=samples, sample_rate=sample_rate)


def _describe(exc: Exception) -> str:
    # FFmpegError's str() carries the errno and a placeholder file name; the bare reason reads
    # better in a client-facing message.
    if isinstance(exc, FFmpegError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _refuse_nested_open(url: str, flags: int, options: dict[str, str]) -> Any:
    # Playlist-style demuxers (hls, concat, ...) open further URLs named inside the file. An
    # upload must never make the server read its own files or the network.
    raise PermissionError(f"refusing to open {url!r} referenced by an upload")


def _decode(data: bytes, sample_rate: int, max_seconds: float | None) -> np.ndarray:
    with av.open(
        io.BytesIO(data), mode="r", metadata_errors="ignore", io_open=_refuse_nested_open
    ) as container:
        if not container.streams.audio:
            raise InvalidRequestError("file contains no audio stream", param="file")
        stream = container.streams.audio[0]
        collector = _MonoCollector(sample_rate, max_seconds)
        # demux() ends with an empty packet whose decode() flushes the decoder.
        for packet in container.demux(stream):
            for frame in packet.decode():
                collector.add(frame)
        return collector.finish()


class _MonoCollector:
    """Downmixes and resamples decoded frames, enforcing the duration limit as it goes."""

    def __init__(self, sample_rate: int, max_seconds: float | None):
        self._rate = sample_rate
        self._max_seconds = max_seconds
        self._seconds = 0.0
        self._key: tuple[str, str, int] | None = None
        self._resampler: av.AudioResampler | None = None
        self._chunks: list[np.ndarray] = []

    def add(self, frame: av.AudioFrame) -> None:
        if frame.samples == 0 or frame.sample_rate <= 0:
            return
        self._seconds += frame.samples / frame.sample_rate
        if self._max_seconds is not None and self._seconds > self._max_seconds:
            raise PayloadTooLargeError(
                f"audio is longer than the limit of {self._max_seconds:g} seconds",
                param="file",
            )
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != self._key:
            # A decoder may change rate or layout mid-stream (AAC finding implicit SBR or
            # parametric stereo after its first frames); PyAV's resampler only takes one input
            # shape, so drain it and start a new one for the new shape.
            self._drain()
            self._key = key
            self._resampler = av.AudioResampler(
                format="flt",
                layout="mono",
                rate=self._rate,
                # Average the channels: FFmpeg's default downmix (0.707 per channel) can
                # push correlated stereo past full scale.
                options={"rematrix_maxval": "1.0"},
            )
        # Samples are concatenated regardless of timestamps; gaps are not ours to fill.
        frame.pts = None
        self._chunks.append(frames_to_array(self._resampler.resample(frame)))

    def _drain(self) -> None:
        if self._resampler is not None:
            self._chunks.append(frames_to_array(self._resampler.resample(None)))
            self._resampler = None

    def finish(self) -> np.ndarray:
        self._drain()
        if not self._chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(self._chunks)


def _truncated_wav(detail: str) -> InvalidRequestError:
    return InvalidRequestError(f"truncated WAV file: {detail}", param="file")


def _check_wav_complete(data: bytes) -> None:
    """Reject a RIFF/WAVE file whose header promises more bytes than arrived.

    FFmpeg happily decodes whatever part of a cut-off WAV is present, which would silently turn
    a failed upload into a shorter clip. Streaming writers put 0 or 0xFFFFFFFF in the size
    fields when the length is unknown; those files are accepted as they are.
    """
    if data[:4] not in (b"RIFF", b"RIFX"):
        return
    if len(data) < 12:
        raise _truncated_wav(f"only {len(data)} bytes")
    if data[8:12] != b"WAVE":
        return
    endian = "<" if data[:4] == b"RIFF" else ">"
    (riff_size,) = struct.unpack(endian + "I", data[4:8])
    # One byte of slack: some writers count the pad byte after an odd-sized data chunk and
    # then do not write it.
    if riff_size not in _WAV_UNKNOWN_SIZES and riff_size + 8 > len(data) + 1:
        raise _truncated_wav(f"header declares {riff_size + 8} bytes but only {len(data)} arrived")
    _check_wav_data_chunk(data, endian)


def _check_wav_data_chunk(data: bytes, endian: str) -> None:
    offset = 12
    while True:
        if offset + 8 > len(data):
            raise _truncated_wav("file ends before the audio data starts")
        chunk_id = data[offset : offset + 4]
        (size,) = struct.unpack(endian + "I", data[offset + 4 : offset + 8])
        if chunk_id == b"data":
            available = len(data) - offset - 8
            if size not in _WAV_UNKNOWN_SIZES and size > available:
                raise _truncated_wav(
                    f"header declares {size} bytes of audio data but only {available} arrived"
                )
            return
        # RIFF chunks are padded to an even length.
        offset += 8 + size + (size & 1)
