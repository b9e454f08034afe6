"""Every metric the engine exports, defined once.

Names are given without Ray's ``ray_`` prefix and without a counter's ``_total`` suffix (the
Prometheus exposition adds ``_total``; Ray adds ``ray_`` and ``_total``). Where each is recorded:

- per model instance (the model's Serve replica, or the in-process worker): queue depth, queue
  wait, batch size, padding efficiency, batch latency;
- per request (the ingress, or the in-process runner): stage latency, time to first audio, audio
  seconds in and out, real-time factor, validation, errors and requests.
"""

from __future__ import annotations

from harmonyspeech.telemetry.core import Kind, MetricSpec

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
"""Latency buckets, from a few milliseconds to a request timeout."""

QUEUE_DEPTH = MetricSpec(
    "harmonyspeech_queue_depth",
    Kind.GAUGE,
    "Work items waiting in the model instance's scheduler",
    ("model",),
)
QUEUE_WAIT = MetricSpec(
    "harmonyspeech_queue_wait_seconds",
    Kind.HISTOGRAM,
    "Time a work item waited in the scheduler before its batch was formed",
    ("model", "priority"),
    _SECONDS,
)
BATCH_SIZE = MetricSpec(
    "harmonyspeech_batch_size",
    Kind.HISTOGRAM,
    "Work items per batch the model ran",
    ("model",),
    (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256),
)
PADDING_EFFICIENCY = MetricSpec(
    "harmonyspeech_batch_padding_efficiency",
    Kind.HISTOGRAM,
    "Useful cost over padded cost of a batch (sum of item costs / items x costliest item); "
    "1 means no padding",
    ("model",),
    (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
)
BATCH_LATENCY = MetricSpec(
    "harmonyspeech_batch_latency_seconds",
    Kind.HISTOGRAM,
    "Wall time of one batch through the model (infer_batch, including per-item re-runs "
    "after a failed batch)",
    ("model",),
    _SECONDS,
)
STAGE_LATENCY = MetricSpec(
    "harmonyspeech_stage_latency_seconds",
    Kind.HISTOGRAM,
    "Wall time of one successful run of a pipeline stage: per request, or per sentence item "
    "for stages that run on items",
    ("pipeline", "stage"),
    _SECONDS,
)
TIME_TO_FIRST_AUDIO = MetricSpec(
    "harmonyspeech_time_to_first_audio_seconds",
    Kind.HISTOGRAM,
    "From the start of a speech request until its first sentence's audio is ready "
    "(streamed or not)",
    ("pipeline", "priority"),
    _SECONDS,
)
AUDIO_OUTPUT_SECONDS = MetricSpec(
    "harmonyspeech_audio_output_seconds",
    Kind.COUNTER,
    "Seconds of speech audio handed to clients (or batch jobs)",
    ("pipeline",),
)
AUDIO_INPUT_SECONDS = MetricSpec(
    "harmonyspeech_audio_input_seconds",
    Kind.COUNTER,
    "Seconds of uploaded audio processed (transcription, VAD, cloning references)",
    ("pipeline",),
)
REAL_TIME_FACTOR = MetricSpec(
    "harmonyspeech_real_time_factor",
    Kind.HISTOGRAM,
    "Processing time over audio duration of a finished request: produced audio for speech "
    "(audio=output), uploaded audio otherwise (audio=input); below 1 is faster than real time",
    ("pipeline", "audio"),
    (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0, 10.0, 50.0),
)
VALIDATION_SCORE = MetricSpec(
    "harmonyspeech_validation_error_rate",
    Kind.HISTOGRAM,
    "Whisper-validated error rate (WER or CER) of synthesised requests",
    ("pipeline", "metric"),
    (0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0),
)
VALIDATION_RETRIES = MetricSpec(
    "harmonyspeech_validation_retries",
    Kind.COUNTER,
    "Sentences synthesised again because validation scored them above the threshold",
    ("pipeline",),
)
ERRORS = MetricSpec(
    "harmonyspeech_errors",
    Kind.COUNTER,
    "Errors answered to clients, by OpenAI error type and code and HTTP status (errors that "
    "break off a started stream count with the status they would have had)",
    ("type", "code", "status"),
)
REQUESTS = MetricSpec(
    "harmonyspeech_requests",
    Kind.COUNTER,
    "HTTP requests answered, by route template, method and status",
    ("endpoint", "method", "status"),
)

ALL: tuple[MetricSpec, ...] = (
    QUEUE_DEPTH,
    QUEUE_WAIT,
    BATCH_SIZE,
    PADDING_EFFICIENCY,
    BATCH_LATENCY,
    STAGE_LATENCY,
    TIME_TO_FIRST_AUDIO,
    AUDIO_OUTPUT_SECONDS,
    AUDIO_INPUT_SECONDS,
    REAL_TIME_FACTOR,
    VALIDATION_SCORE,
    VALIDATION_RETRIES,
    ERRORS,
    REQUESTS,
)
"""Every metric, for documentation and tests."""
