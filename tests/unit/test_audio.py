"""Tests for harmonyspeech.audio with real codecs (PyAV's bundled FFmpeg), no mocks.

Every upload is produced here with PyAV from a generated sine, so the tests need no data files.
"""

from __future__ import annotations

import functools
import io
import struct
import wave

import av
import numpy as np
import pytest

from harmonyspeech.audio import (
    CONTENT_TYPES,
    OUTPUT_FORMATS,
    Audio,
    StreamEncoder,
    StreamResampler,
    decode_audio,
    encode_audio,
    output_sample_rate,
    resample,
)
from harmonyspeech.errors import InvalidRequestError, PayloadTooLargeError

pytestmark = pytest.mark.unit

TONE_HZ = 440.0
AMPLITUDE = 0.5
DURATION_TOLERANCE = 0.06
# Irregular chunk lengths, including a single sample and an empty chunk.
CHUNKS = (1, 100, 4097, 22050, 0)
CODED_FORMATS = tuple(fmt for fmt in OUTPUT_FORMATS if fmt != "pcm")


def sine(seconds: float, rate: int, freq: float = TONE_HZ, amplitude: float = AMPLITUDE):
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def tone_fit(samples: np.ndarray, rate: int, freq: float = TONE_HZ) -> tuple[float, float]:
    """Amplitude of the ``freq`` component and the share of the signal's energy it holds.

    Projecting onto sin and cos makes this independent of phase, so codec delays do not matter.
    The edges are skipped: codecs fade in and out there.
    """
    edge = rate // 10
    y = samples[edge:-edge].astype(np.float64)
    t = np.arange(y.size) / rate
    s = 2 * np.mean(y * np.sin(2 * np.pi * freq * t))
    c = 2 * np.mean(y * np.cos(2 * np.pi * freq * t))
    amplitude = float(np.hypot(s, c))
    share = (amplitude**2 / 2) / float(np.mean(y**2))
    return amplitude, share


def assert_is_tone(audio: Audio, amplitude: float = AMPLITUDE) -> None:
    fitted, share = tone_fit(audio.samples, audio.sample_rate)
    assert share > 0.9, f"only {share:.2f} of the energy is the {TONE_HZ} Hz tone"
    assert fitted == pytest.approx(amplitude, rel=0.15)


def stream_encode(fmt: str, samples: np.ndarray, rate: int) -> tuple[bytes, list[bytes]]:
    encoder = StreamEncoder(fmt, input_rate=rate)
    parts, pos = [], 0
    for size in (*CHUNKS, samples.size):
        parts.append(encoder.encode(samples[pos : pos + size]))
        pos += size
    parts.append(encoder.finish())
    return b"".join(parts), parts


@functools.cache
def make_upload(
    container: str, codec: str, rate: int, *, seconds: float = 2.0, right_gain: float = 1.0
) -> bytes:
    """Encode a stereo sine (left at full, right at ``right_gain``) the way a client might."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo")
        if codec == "vorbis":
            # FFmpeg's native Vorbis encoder is flagged experimental.
            stream.codec_context.options = {"strict": "experimental"}
        stream.codec_context.open()
        framer = av.AudioResampler(
            format=stream.format.name,
            layout="stereo",
            rate=rate,
            frame_size=stream.codec_context.frame_size or None,
        )
        left = sine(seconds, rate)
        frame = av.AudioFrame.from_ndarray(
            np.stack([left, left * right_gain]), format="fltp", layout="stereo"
        )
        frame.sample_rate = rate
        pts = 0
        for chunk in framer.resample(frame) + framer.resample(None):
            chunk.pts, pts = pts, pts + chunk.samples
            out.mux(stream.encode(chunk))
        out.mux(stream.encode(None))
    return buf.getvalue()


def assert_bad_file(data: bytes, match: str | None = None) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError, match=match) as info:
        decode_audio(data, sample_rate=16_000)
    assert info.value.status_code == 400
    assert info.value.param == "file"
    return info.value


# ---------------------------------------------------------------------------------------------
# Formats


def test_format_tables() -> None:
    assert OUTPUT_FORMATS == ("mp3", "opus", "aac", "flac", "wav", "pcm")
    assert CONTENT_TYPES["mp3"] == "audio/mpeg"
    assert set(CONTENT_TYPES) == set(OUTPUT_FORMATS)
    assert all(output_sample_rate(fmt) == 24_000 for fmt in OUTPUT_FORMATS)


@pytest.mark.parametrize(
    "call",
    [
        lambda: output_sample_rate("ogg"),
        lambda: StreamEncoder("wma", input_rate=24_000),
        lambda: encode_audio(sine(0.1, 24_000), input_rate=24_000, fmt="MP3"),
    ],
)
def test_unknown_format_is_rejected(call) -> None:
    with pytest.raises(InvalidRequestError) as info:
        call()
    assert info.value.status_code == 400
    assert info.value.param == "response_format"


# ---------------------------------------------------------------------------------------------
# Encoding round trips


@pytest.mark.parametrize("fmt", CODED_FORMATS)
def test_one_shot_round_trip(fmt: str) -> None:
    data = encode_audio(sine(2.0, 24_000), input_rate=24_000, fmt=fmt)
    decoded = decode_audio(data, sample_rate=24_000)
    assert decoded.duration == pytest.approx(2.0, abs=DURATION_TOLERANCE)
    assert_is_tone(decoded)


@pytest.mark.parametrize("fmt", CODED_FORMATS)
def test_streaming_round_trip_with_irregular_chunks(fmt: str) -> None:
    # 22.05 kHz input exercises the encoder's internal, stateful resampling too.
    data, parts = stream_encode(fmt, sine(2.0, 22_050), 22_050)
    assert parts[CHUNKS.index(0)] == b""
    decoded = decode_audio(data, sample_rate=24_000)
    # A non-seekable MP3 stream cannot carry the Xing/LAME tag that tells decoders to drop
    # LAME's 1105-sample encoder delay, so the decoded stream is up to ~70 ms longer.
    slack = 0.075 if fmt == "mp3" else DURATION_TOLERANCE
    assert decoded.duration == pytest.approx(2.0, abs=slack)
    assert_is_tone(decoded)


def test_streaming_output_arrives_before_finish() -> None:
    for fmt in ("mp3", "opus", "aac", "flac"):
        _, parts = stream_encode(fmt, sine(2.0, 24_000), 24_000)
        assert sum(map(len, parts[:-1])) > sum(map(len, parts)) // 2, fmt


def test_pcm_one_shot_is_headerless_s16le() -> None:
    samples = sine(1.2345, 24_000)
    data = encode_audio(samples, input_rate=24_000, fmt="pcm")
    assert len(data) == round(1.2345 * 24_000) * 2
    assert data[:4] != b"RIFF"
    expected = (samples * 32767).astype("<i2")
    np.testing.assert_allclose(np.frombuffer(data, "<i2"), expected, atol=1)


def test_pcm_is_resampled_to_24k() -> None:
    data = encode_audio(sine(2.0, 16_000), input_rate=16_000, fmt="pcm")
    assert abs(len(data) // 2 - 48_000) <= 2
    samples = np.frombuffer(data, "<i2").astype(np.float32) / 32767
    assert_is_tone(Audio(samples, 24_000))


def test_pcm_streaming_equals_one_shot_at_24k() -> None:
    samples = sine(2.0, 24_000)
    streamed, _ = stream_encode("pcm", samples, 24_000)
    assert streamed == encode_audio(samples, input_rate=24_000, fmt="pcm")


def test_wav_one_shot_has_exact_header() -> None:
    data = encode_audio(sine(2.0, 24_000), input_rate=24_000, fmt="wav")
    with wave.open(io.BytesIO(data)) as reader:
        assert reader.getnchannels() == 1
        assert reader.getsampwidth() == 2
        assert reader.getframerate() == 24_000
        assert reader.getnframes() == 48_000
    assert len(data) == 44 + 96_000


def test_streaming_wav_uses_sentinel_sizes() -> None:
    data, _ = stream_encode("wav", sine(2.0, 24_000), 24_000)
    riff_size, data_size = struct.unpack("<I", data[4:8])[0], struct.unpack("<I", data[40:44])[0]
    assert data[:4] == b"RIFF" and data[36:40] == b"data"
    assert riff_size == data_size == 0xFFFFFFFF
    assert decode_audio(data, sample_rate=24_000).duration == pytest.approx(2.0, abs=1e-3)


def test_non_finite_and_out_of_range_samples_are_sanitised() -> None:
    samples = sine(1.0, 24_000)
    samples[::50] = np.nan
    samples[1::50] = np.inf
    samples[2::50] = 7.0
    for fmt in OUTPUT_FORMATS:
        data = encode_audio(samples, input_rate=24_000, fmt=fmt)
        assert data, fmt
    pcm = np.frombuffer(encode_audio(samples, input_rate=24_000, fmt="pcm"), "<i2")
    assert pcm[0] == 0 and pcm[1] == 0 and pcm[2] == 32767


def test_encoder_contract() -> None:
    encoder = StreamEncoder("opus", input_rate=16_000)
    assert encoder.content_type == "audio/opus"
    assert encoder.output_rate == 24_000
    assert encoder.encode(np.zeros(0, np.float32)) == b""
    encoder.finish()
    with pytest.raises(RuntimeError):
        encoder.encode(sine(0.1, 16_000))
    with pytest.raises(RuntimeError):
        encoder.finish()


@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
def test_finish_without_audio(fmt: str) -> None:
    data = StreamEncoder(fmt, input_rate=24_000, streaming=False).finish()
    assert isinstance(data, bytes)
    if fmt == "wav":
        assert data == encode_audio(np.zeros(0, np.float32), input_rate=24_000, fmt="wav")
        assert len(data) == 44


# ---------------------------------------------------------------------------------------------
# Decoding uploads

UPLOADS = [
    ("wav", "pcm_s16le"),
    ("mp3", "libmp3lame"),
    ("flac", "flac"),
    ("ogg", "libopus"),
    ("ogg", "vorbis"),
    ("webm", "libopus"),
    ("ipod", "aac"),  # .m4a
]


@pytest.mark.parametrize(("container", "codec"), UPLOADS, ids=[f"{c}-{k}" for c, k in UPLOADS])
@pytest.mark.parametrize(("input_rate", "target_rate"), [(16_000, 24_000), (44_100, 16_000)])
def test_decode_uploads(container: str, codec: str, input_rate: int, target_rate: int) -> None:
    if codec == "libopus" and input_rate == 44_100:
        input_rate = 48_000  # Opus has no 44.1 kHz mode
    audio = decode_audio(make_upload(container, codec, input_rate), sample_rate=target_rate)
    assert audio.sample_rate == target_rate
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.duration == pytest.approx(2.0, abs=DURATION_TOLERANCE)
    assert_is_tone(audio)


def test_stereo_is_averaged_to_mono() -> None:
    # Left at 0.5, right silent: the average is a 0.25 tone, not FFmpeg's default 0.35.
    audio = decode_audio(
        make_upload("wav", "pcm_s16le", 16_000, right_gain=0.0), sample_rate=16_000
    )
    assert_is_tone(audio, amplitude=0.25)
    assert tone_fit(audio.samples, 16_000)[0] == pytest.approx(0.25, rel=0.01)


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = encode_audio(sine(0.5, 24_000), input_rate=24_000, fmt="flac")
    for view in (bytearray(data), memoryview(data)):
        assert decode_audio(view, sample_rate=24_000).duration == pytest.approx(0.5, abs=1e-3)


def test_wav_with_zero_size_fields_is_accepted() -> None:
    # Some streaming writers leave the sizes at 0 instead of 0xFFFFFFFF.
    data = bytearray(encode_audio(sine(1.0, 24_000), input_rate=24_000, fmt="wav"))
    data[4:8] = bytes(4)
    data[40:44] = bytes(4)
    assert decode_audio(bytes(data), sample_rate=24_000).duration == pytest.approx(1.0, abs=0.01)


def test_max_seconds() -> None:
    data = encode_audio(sine(2.0, 24_000), input_rate=24_000, fmt="flac")
    assert decode_audio(data, sample_rate=16_000, max_seconds=2.5).duration == pytest.approx(2.0)
    with pytest.raises(PayloadTooLargeError, match=r"1\.5 seconds") as info:
        decode_audio(data, sample_rate=16_000, max_seconds=1.5)
    assert info.value.status_code == 413
    assert info.value.param == "file"


# ---------------------------------------------------------------------------------------------
# Bad uploads


def _wav_bytes() -> bytes:
    return encode_audio(sine(1.0, 24_000), input_rate=24_000, fmt="wav")


def _video_only() -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        stream = out.add_stream("ffv1", rate=5)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        image = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        for pts in range(3):
            frame = image.reformat(format="yuv420p")
            frame.pts = pts
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: b"", "empty file"),
        (lambda: np.random.default_rng(0).bytes(8000), "could not decode audio"),
        (lambda: b"hello world this is not audio", "could not decode audio"),
        (lambda: _wav_bytes()[:30], "truncated WAV"),
        (lambda: _wav_bytes()[:8], "truncated WAV"),
        (lambda: _wav_bytes()[: 44 + 24_000], "truncated WAV"),
        (lambda: _wav_bytes()[:44], "truncated WAV"),
        (lambda: make_upload("mp3", "libmp3lame", 16_000)[:12], None),
        (lambda: make_upload("flac", "flac", 16_000)[:40], None),
        (_video_only, "no audio stream"),
    ],
    ids=[
        "empty",
        "random",
        "text",
        "wav-cut-in-header",
        "wav-only-riff-id",
        "wav-cut-in-data",
        "wav-header-only",
        "mp3-few-bytes",
        "flac-few-bytes",
        "video-only",
    ],
)
def test_bad_uploads_are_400(make, match: str | None) -> None:
    assert_bad_file(make(), match)


def test_wav_riff_size_larger_than_file_is_truncated() -> None:
    data = bytearray(_wav_bytes())
    data[4:8] = struct.pack("<I", len(data) + 1000)
    assert_bad_file(bytes(data), "truncated WAV")


def test_silent_wav_with_empty_data_chunk_is_400() -> None:
    header = encode_audio(np.zeros(0, np.float32), input_rate=24_000, fmt="wav")
    assert_bad_file(header, "no audio samples")


def test_playlist_upload_cannot_read_server_files(tmp_path) -> None:
    # An HLS playlist naming a local file must not make the server decode that file.
    secret = tmp_path / "secret.wav"
    secret.write_bytes(_wav_bytes())
    playlist = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:1\n"
        f"#EXTINF:1.0,\n{secret}\n#EXTINF:1.0,\nfile://{secret}\n#EXT-X-ENDLIST\n"
    )
    assert_bad_file(playlist.encode())


def test_corrupt_payload_never_escapes_as_500() -> None:
    # Flip bytes all over real files: any outcome but a 400 or a clean decode is a bug.
    rng = np.random.default_rng(1)
    for container, codec in UPLOADS[:4]:
        data = bytearray(make_upload(container, codec, 16_000))
        for _ in range(5):
            corrupt = bytearray(data)
            positions = rng.integers(0, len(corrupt), size=len(corrupt) // 50)
            corrupt_values = rng.integers(0, 256, size=positions.size, dtype=np.uint8)
            for pos, value in zip(positions, corrupt_values, strict=True):
                corrupt[pos] = int(value)
            try:
                decode_audio(bytes(corrupt), sample_rate=16_000)
            except InvalidRequestError as exc:
                assert exc.param == "file"


# ---------------------------------------------------------------------------------------------
# Resampling

RATE_PAIRS = [(44_100, 24_000), (24_000, 16_000), (16_000, 24_000), (22_050, 24_000)]


def _low_tone(n: int, rate: int) -> np.ndarray:
    return np.sin(2 * np.pi * 200 * np.arange(n) / rate).astype(np.float32)


@pytest.mark.parametrize(("from_rate", "to_rate"), RATE_PAIRS)
def test_resample_length_and_content(from_rate: int, to_rate: int) -> None:
    n = 30_001
    out = resample(_low_tone(n, from_rate), from_rate, to_rate)
    assert out.dtype == np.float32
    assert abs(out.size - n * to_rate / from_rate) <= 2
    reference = _low_tone(out.size, to_rate)
    np.testing.assert_allclose(out[200:-200], reference[200:-200], atol=1e-3)


@pytest.mark.parametrize(("from_rate", "to_rate"), RATE_PAIRS)
def test_stream_resampler_matches_one_shot(from_rate: int, to_rate: int) -> None:
    n = 30_001
    samples = _low_tone(n, from_rate)
    resampler = StreamResampler(from_rate, to_rate)
    pieces, pos = [], 0
    for size in (*CHUNKS, 7, 3, n):
        pieces.append(resampler.process(samples[pos : pos + size]))
        pos += size
    pieces.append(resampler.flush())
    streamed = np.concatenate(pieces)
    assert abs(streamed.size - n * to_rate / from_rate) <= 2
    np.testing.assert_allclose(streamed, resample(samples, from_rate, to_rate), atol=1e-5)


def test_resample_identity_returns_a_copy() -> None:
    samples = _low_tone(1000, 16_000)
    out = resample(samples, 16_000, 16_000)
    assert out is not samples
    np.testing.assert_array_equal(out, samples)
    resampler = StreamResampler(16_000, 16_000)
    np.testing.assert_array_equal(resampler.process(samples), samples)
    assert resampler.flush().size == 0


def test_resample_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        resample(np.zeros((2, 10), np.float32), 16_000, 24_000)
    with pytest.raises(ValueError):
        StreamResampler(0, 24_000)


def test_audio_dataclass() -> None:
    audio = Audio(np.zeros(8000, np.float64), 16_000)
    assert audio.samples.dtype == np.float32
    assert audio.duration == 0.5
    with pytest.raises(ValueError):
        Audio(np.zeros((2, 10), np.float32), 16_000)


def test_decoder_follows_mid_stream_format_changes() -> None:
    # FFmpeg's demuxers mostly refuse such files, so feed the collector frames directly: a
    # chained stream switching from 16 kHz mono to 44.1 kHz stereo must come out continuous.
    from harmonyspeech.audio.decode import _MonoCollector

    collector = _MonoCollector(16_000, max_seconds=None)
    for rate, layout in ((16_000, "mono"), (44_100, "stereo")):
        tone = sine(1.0, rate)
        frame = av.AudioFrame.from_ndarray(
            np.tile(tone, (len(av.AudioLayout(layout).channels), 1)), format="fltp", layout=layout
        )
        frame.sample_rate = rate
        collector.add(frame)
    out = collector.finish()
    assert abs(out.size - 32_000) <= 2
    assert_is_tone(Audio(out, 16_000))
