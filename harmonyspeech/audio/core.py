"""The ``Audio`` value type, the output formats, and sample helpers shared by the codecs."""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np

from harmonyspeech.errors import InvalidRequestError

OUTPUT_FORMATS: tuple[str, ...] = ("mp3", "opus", "aac", "flac", "wav", "pcm")

CONTENT_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}

# OpenAI's speech endpoint produces 24 kHz audio, and clients that play raw `pcm` assume that rate.
OUTPUT_RATE = 24_000


@dataclass(frozen=True, eq=False)
class Audio:
    """A mono clip.

    Attributes:
        samples: float32 samples, shape ``(n,)``, nominally in ``[-1, 1]``.
        sample_rate: Samples per second.
    """

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        samples = np.asarray(self.samples, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"Audio samples must be 1-D (mono), got shape {samples.shape}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        # The dataclass is frozen; this is the one place the field may be normalised.
        object.__setattr__(self, "samples", samples)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.samples.shape[0] / self.sample_rate


def output_sample_rate(fmt: str) -> int:
    """The sample rate audio is encoded at for ``fmt``.

    Args:
        fmt: One of :data:`OUTPUT_FORMATS`.

    Returns:
        24000 for every format.

    Raises:
        InvalidRequestError: ``fmt`` is not a supported ``response_format``.
    """
    check_format(fmt)
    return OUTPUT_RATE


def check_format(fmt: str) -> None:
    if fmt not in OUTPUT_FORMATS:
        raise InvalidRequestError(
            f"unsupported response_format {fmt!r}; expected one of {', '.join(OUTPUT_FORMATS)}",
            param="response_format",
        )


def as_mono_float32(samples: np.ndarray) -> np.ndarray:
    array = np.asarray(samples, dtype=np.float32)
    if array.ndim != 1:
        raise ValueError(f"expected mono samples of shape (n,), got shape {array.shape}")
    return array


def sanitize(samples: np.ndarray) -> np.ndarray:
    """Replace NaN/inf with silence and clip to [-1, 1] so a broken model cannot break encoders."""
    array = as_mono_float32(samples)
    array = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(array, -1.0, 1.0)


def to_pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def mono_frame(samples: np.ndarray, sample_rate: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(samples, dtype=np.float32)[np.newaxis, :], format="flt", layout="mono"
    )
    frame.sample_rate = sample_rate
    return frame


def frames_to_array(frames: list[av.AudioFrame]) -> np.ndarray:
    if not frames:
        return np.zeros(0, dtype=np.float32)
    # Packed "flt" mono frames come out as shape (1, n).
    return np.concatenate([frame.to_ndarray().reshape(-1) for frame in frames]).astype(
        np.float32, copy=False
    )


def check_rate(name: str, rate: int) -> None:
    if rate <= 0:
        raise ValueError(f"{name} must be positive, got {rate}")
