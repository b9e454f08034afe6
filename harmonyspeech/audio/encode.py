"""Encoding into the OpenAI ``response_format`` values, whole or chunk by chunk (streaming)."""

from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Protocol

import av
import numpy as np

from harmonyspeech.audio.core import (
    CONTENT_TYPES,
    OUTPUT_RATE,
    check_format,
    check_rate,
    mono_frame,
    output_sample_rate,
    sanitize,
    to_pcm16,
)
from harmonyspeech.audio.resample import StreamResampler

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _CodecSpec:
    container: str
    codec: str
    bit_rate: int | None = None
    container_options: dict[str, str] = field(default_factory=dict)


_PYAV_SPECS: dict[str, _CodecSpec] = {
    "mp3": _CodecSpec("mp3", "libmp3lame", bit_rate=64_000),
    # Ogg collects packets into pages of up to one second by default; short pages let a
    # streaming client start playing within a fraction of a second.
    "opus": _CodecSpec(
        "ogg", "libopus", bit_rate=48_000, container_options={"page_duration": "100000"}
    ),
    "aac": _CodecSpec("adts", "aac", bit_rate=64_000),
    "flac": _CodecSpec("flac", "flac"),
}


class _Backend(Protocol):
    def encode(self, samples: np.ndarray) -> bytes: ...

    def finish(self) -> bytes: ...


def _wav_header(data_bytes: int | None) -> bytes:
    """A 44-byte PCM s16le mono WAV header; ``None`` writes the unknown-length sentinels."""
    if data_bytes is None:
        riff_size = data_size = 0xFFFFFFFF
    else:
        riff_size, data_size = 36 + data_bytes, data_bytes
    byte_rate = OUTPUT_RATE * 2
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        riff_size,
        b"WAVE",
        b"fmt ",
        16,  # fmt chunk size for plain PCM
        1,  # WAVE_FORMAT_PCM
        1,  # channels
        OUTPUT_RATE,
        byte_rate,
        2,  # block align: one s16 sample per frame
        16,  # bits per sample
        b"data",
        data_size,
    )


class _PcmBackend:
    """Raw s16le (``pcm``) or WAV, written without PyAV.

    A streaming WAV gets a header with unknown-length sentinels up front; a non-streaming one is
    held until :meth:`finish` so its header can carry the exact sizes.
    """

    def __init__(self, input_rate: int, *, wav: bool, streaming: bool):
        self._resampler = StreamResampler(input_rate, OUTPUT_RATE)
        self._wav = wav
        self._streaming = streaming
        self._header_sent = False
        self._held = bytearray()

    def encode(self, samples: np.ndarray) -> bytes:
        return self._emit(to_pcm16(self._resampler.process(samples)), final=False)

    def finish(self) -> bytes:
        return self._emit(to_pcm16(self._resampler.flush()), final=True)

    def _emit(self, pcm: bytes, *, final: bool) -> bytes:
        if not self._wav:
            return pcm
        if not self._streaming:
            self._held += pcm
            return self._exact_wav() if final else b""
        if self._header_sent or not (pcm or final):
            return pcm
        self._header_sent = True
        return _wav_header(None) + pcm

    def _exact_wav(self) -> bytes:
        size = len(self._held)
        if 36 + size > 0xFFFFFFFF:
            # Over 4 GiB (~24 h at 24 kHz) the RIFF fields overflow; readers that honour the
            # sentinel still read the whole file.
            logger.warning(
                "WAV output of %d bytes exceeds RIFF limits; writing sentinel sizes", size
            )
            return _wav_header(None) + bytes(self._held)
        return _wav_header(size) + bytes(self._held)


class _ByteSink:
    """A write-only file object for the muxer.

    It has no ``seek``, so FFmpeg treats the output as a non-seekable stream and never goes
    back to patch bytes that were already sent to the client.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        return len(data)

    def take(self) -> bytes:
        out = bytes(self._buffer)
        self._buffer.clear()
        return out


class _PyAVBackend:
    """mp3 / opus / aac / flac through PyAV.

    One PyAV resampler converts the input rate to 24 kHz, float to the codec's sample format,
    and re-cuts arbitrary chunk lengths into the fixed frame size the codec needs.

    Streaming output goes to a non-seekable sink and is handed out as the muxer produces it.
    Non-streaming output goes to a seekable buffer returned whole by :meth:`finish`, so the muxer
    can go back and write exact lengths (the MP3 Xing/LAME tag with encoder delay, the FLAC
    STREAMINFO sample count).
    """

    def __init__(self, spec: _CodecSpec, input_rate: int, *, streaming: bool):
        self._input_rate = input_rate
        self._sink: _ByteSink | io.BytesIO = _ByteSink() if streaming else io.BytesIO()
        # flush_packets: push every packet through the AVIO buffer immediately, otherwise
        # FFmpeg sits on up to 32 KiB before a streaming client sees anything.
        options = {"fflags": "+flush_packets", **spec.container_options}
        self._container = av.open(
            self._sink, mode="w", format=spec.container, container_options=options
        )
        self._stream = self._container.add_stream(spec.codec, rate=OUTPUT_RATE, layout="mono")
        context = self._stream.codec_context
        if spec.bit_rate is not None:
            context.bit_rate = spec.bit_rate
        # Open now: the codec's frame size and sample format are only known once it is open.
        context.open()
        self._resampler = av.AudioResampler(
            format=self._stream.format.name,
            layout="mono",
            rate=OUTPUT_RATE,
            frame_size=context.frame_size or None,
        )
        self._time_base = Fraction(1, OUTPUT_RATE)
        self._next_pts = 0
        self._container.start_encoding()

    def encode(self, samples: np.ndarray) -> bytes:
        if samples.size:
            self._encode_frames(self._resampler.resample(mono_frame(samples, self._input_rate)))
        return self._take()

    def finish(self) -> bytes:
        self._encode_frames(self._resampler.resample(None))
        self._container.mux(self._stream.encode(None))
        self._container.close()
        if isinstance(self._sink, io.BytesIO):
            return self._sink.getvalue()
        return self._sink.take()

    def _encode_frames(self, frames: list[av.AudioFrame]) -> None:
        for frame in frames:
            # Stamp our own sample-count timestamps: the muxer needs monotonic pts, and the
            # input frames never carried any.
            frame.pts = self._next_pts
            frame.time_base = self._time_base
            self._next_pts += frame.samples
            self._container.mux(self._stream.encode(frame))

    def _take(self) -> bytes:
        if isinstance(self._sink, _ByteSink):
            return self._sink.take()
        return b""


class StreamEncoder:
    """Encode float32 mono audio chunk by chunk into one of :data:`OUTPUT_FORMATS`.

    Input is resampled (statefully) from ``input_rate`` to :func:`output_sample_rate`, NaN/inf
    become silence and samples are clipped to ``[-1, 1]``. Not thread-safe: use one encoder per
    response.

    Args:
        fmt: One of :data:`OUTPUT_FORMATS`.
        input_rate: Sample rate of the chunks passed to :meth:`encode`.
        streaming: When true, :meth:`encode` returns bytes as soon as the codec produces them
            (a WAV header then carries unknown-length sentinels). When false, everything is
            returned by :meth:`finish` as one file with exact lengths in its headers.

    Raises:
        InvalidRequestError: ``fmt`` is not supported (``param="response_format"``).
    """

    def __init__(self, fmt: str, *, input_rate: int, streaming: bool = True):
        check_format(fmt)
        check_rate("input_rate", input_rate)
        self.fmt = fmt
        self.content_type = CONTENT_TYPES[fmt]
        self.output_rate = output_sample_rate(fmt)
        self.streaming = streaming
        self._finished = False
        self._backend: _Backend
        if fmt in _PYAV_SPECS:
            self._backend = _PyAVBackend(_PYAV_SPECS[fmt], input_rate, streaming=streaming)
        else:
            self._backend = _PcmBackend(input_rate, wav=fmt == "wav", streaming=streaming)

    def encode(self, samples: np.ndarray) -> bytes:
        """Encode the next chunk.

        Args:
            samples: Mono float32 samples at ``input_rate``; may be empty.

        Returns:
            The bytes ready to send now, possibly ``b""`` (codecs buffer a frame or two).

        Raises:
            RuntimeError: :meth:`finish` was already called.
        """
        if self._finished:
            raise RuntimeError("StreamEncoder.encode() called after finish()")
        clean = sanitize(samples)
        if clean.size == 0:
            return b""
        return self._backend.encode(clean)

    def finish(self) -> bytes:
        """Flush the codec and write the container trailer. Call exactly once.

        Returns:
            The remaining bytes (for a non-streaming encoder: the whole file).

        Raises:
            RuntimeError: :meth:`finish` was already called.
        """
        if self._finished:
            raise RuntimeError("StreamEncoder.finish() called twice")
        self._finished = True
        return self._backend.finish()


def encode_audio(samples: np.ndarray, *, input_rate: int, fmt: str) -> bytes:
    """Encode a whole mono clip into one file.

    Args:
        samples: Mono float32 samples.
        input_rate: Sample rate of ``samples``; the output is resampled to
            :func:`output_sample_rate`.
        fmt: One of :data:`OUTPUT_FORMATS`.

    Returns:
        The encoded file (for ``pcm``: headerless s16le at 24 kHz).

    Raises:
        InvalidRequestError: ``fmt`` is not supported (``param="response_format"``).
    """
    encoder = StreamEncoder(fmt, input_rate=input_rate, streaming=False)
    return encoder.encode(samples) + encoder.finish()
