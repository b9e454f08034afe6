"""Prometheus metrics of the HTTP layer, served at ``GET /metrics``.

Each ingress process exports its own counters (with several ingress replicas, Prometheus scrapes
each, or Ray's metrics agent aggregates them). Model-side batch statistics stay in
``GET /v1/models/instance:NAME``.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter, Histogram

from harmonyspeech.pipelines.speech import SpeechItem, retries
from harmonyspeech.pipelines.validation import Score, request_score

VALIDATION_SCORE = Histogram(
    "harmonyspeech_validation_error_rate",
    "Whisper-validated error rate (WER or CER) of synthesised requests",
    ["pipeline", "metric"],
    buckets=(0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0),
)
VALIDATION_RETRIES = Counter(
    "harmonyspeech_validation_retries",
    "Sentences synthesised again because validation scored them above the threshold",
    ["pipeline"],
)


def record_validation(pipeline: str, items: Sequence[SpeechItem]) -> Score | None:
    """Export a finished speech request's validation score and retries; return the score."""
    score = request_score(item.score for item in items)
    if score is None:
        return None
    VALIDATION_SCORE.labels(pipeline, score.metric).observe(score.rate)
    extra = retries(items)
    if extra:
        VALIDATION_RETRIES.labels(pipeline).inc(extra)
    return score
