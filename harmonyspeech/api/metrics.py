"""Request metrics recorded by the HTTP layer: validation scores, errors and requests.

The metrics themselves are defined in ``harmonyspeech.telemetry.catalog``; they go to this
process's ``GET /metrics`` (in-process) or to Ray's metrics agent (inside Ray Serve).
"""

from __future__ import annotations

from collections.abc import Sequence

from harmonyspeech.errors import HarmonySpeechError
from harmonyspeech.pipelines.speech import SpeechItem, retries
from harmonyspeech.pipelines.validation import Score, request_score
from harmonyspeech.telemetry import catalog as metrics


def record_validation(pipeline: str, items: Sequence[SpeechItem]) -> Score | None:
    """Export a finished speech request's validation score and retries; return the score."""
    score = request_score(item.score for item in items)
    if score is None:
        return None
    metrics.VALIDATION_SCORE.record(score.rate, pipeline=pipeline, metric=score.metric)
    metrics.VALIDATION_RETRIES.record(retries(items), pipeline=pipeline)
    return score


def record_error(error: HarmonySpeechError) -> None:
    """Count an error answered to a client (or breaking off its stream)."""
    metrics.ERRORS.record(1, type=error.error_type, code=error.code or "", status=error.status_code)


def record_request(endpoint: str, method: str, status: int) -> None:
    """Count an answered HTTP request."""
    metrics.REQUESTS.record(1, endpoint=endpoint, method=method, status=status)
