"""Audio decoding, resampling and encoding.

Everything here works on mono float32 numpy arrays. Uploads (any container FFmpeg can demux) are
decoded with PyAV into an :class:`Audio` at the sample rate a model wants; synthesised audio is
encoded at the HTTP edge into one of the OpenAI ``response_format`` values, either in one go
(:func:`encode_audio`) or chunk by chunk for streaming responses (:class:`StreamEncoder`).

PyAV bundles its own FFmpeg, so no system ffmpeg is needed. A user's bad upload is always an
:class:`~harmonyspeech.errors.InvalidRequestError` (400) or, when it is too long, a
:class:`~harmonyspeech.errors.PayloadTooLargeError` (413); no PyAV exception leaks out of
:func:`decode_audio`.
"""

from harmonyspeech.audio.core import (
    CONTENT_TYPES,
    OUTPUT_FORMATS,
    OUTPUT_RATE,
    Audio,
    output_sample_rate,
)
from harmonyspeech.audio.decode import decode_audio
from harmonyspeech.audio.encode import StreamEncoder, encode_audio
from harmonyspeech.audio.resample import StreamResampler, resample

__all__ = [
    "CONTENT_TYPES",
    "OUTPUT_FORMATS",
    "OUTPUT_RATE",
    "Audio",
    "StreamEncoder",
    "StreamResampler",
    "decode_audio",
    "encode_audio",
    "output_sample_rate",
    "resample",
]
