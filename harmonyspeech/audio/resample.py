"""Sample-rate conversion, whole clips or streamed chunk by chunk."""

from __future__ import annotations

import av
import numpy as np

from harmonyspeech.audio.core import as_mono_float32, check_rate, frames_to_array, mono_frame


class StreamResampler:
    """Resample a mono float32 stream chunk by chunk.

    The resampler keeps its filter state between calls, so the concatenated output equals a
    one-shot resample of the concatenated input: no clicks or lost samples at chunk boundaries.
    Call :meth:`flush` once at the end to get the samples still held in the filter; after that the
    object starts over as a fresh stream.

    Args:
        from_rate: Sample rate of the input.
        to_rate: Sample rate of the output.
    """

    def __init__(self, from_rate: int, to_rate: int):
        check_rate("from_rate", from_rate)
        check_rate("to_rate", to_rate)
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._resampler = self._new_resampler()

    def _new_resampler(self) -> av.AudioResampler | None:
        if self.from_rate == self.to_rate:
            return None
        return av.AudioResampler(format="flt", layout="mono", rate=self.to_rate)

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Resample the next chunk.

        Args:
            samples: Mono float32 samples at ``from_rate``; may be empty.

        Returns:
            The output samples available so far (the filter holds back a few).
        """
        array = as_mono_float32(samples)
        if self._resampler is None:
            return array.copy()
        if array.size == 0:
            return np.zeros(0, dtype=np.float32)
        return frames_to_array(self._resampler.resample(mono_frame(array, self.from_rate)))

    def flush(self) -> np.ndarray:
        """Return the samples still held in the filter and reset for a new stream."""
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        tail = frames_to_array(self._resampler.resample(None))
        self._resampler = self._new_resampler()
        return tail


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample a whole mono clip.

    Args:
        samples: Mono float32 samples at ``from_rate``.
        from_rate: Input sample rate.
        to_rate: Output sample rate.

    Returns:
        float32 samples at ``to_rate``, about ``len(samples) * to_rate / from_rate`` of them
        (a copy of the input when the rates are equal).
    """
    resampler = StreamResampler(from_rate, to_rate)
    head = resampler.process(samples)
    tail = resampler.flush()
    return np.concatenate([head, tail]) if tail.size else head
