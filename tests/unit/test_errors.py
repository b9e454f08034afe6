"""The error hierarchy: statuses, the OpenAI envelope, pickling across processes."""

from __future__ import annotations

import pickle

import pytest

from harmonyspeech import errors

CASES = [
    (errors.InvalidRequestError("bad", param="speed"), 400, "invalid_request_error"),
    (errors.AuthenticationError("no key"), 401, "authentication_error"),
    (errors.NotFoundError("gone", param="model"), 404, "invalid_request_error"),
    (errors.MethodNotAllowedError("nope", allowed=("GET", "HEAD")), 405, "invalid_request_error"),
    (errors.PayloadTooLargeError("big", param="file"), 413, "invalid_request_error"),
    (errors.OverloadedError("full", retry_after_s=3), 503, "server_error"),
    (errors.RateLimitError("slow down", retry_after_s=7), 429, "rate_limit_error"),
    (errors.DeadlineExceededError("slow"), 504, "server_error"),
    (errors.ModelLoadError("broken"), 503, "server_error"),
    (errors.PipelineStageError("boom", stage="vad"), 500, "server_error"),
    (errors.InternalError("oops"), 500, "server_error"),
]


@pytest.mark.parametrize(("error", "status", "kind"), CASES)
def test_status_and_envelope(error: errors.HarmonySpeechError, status: int, kind: str) -> None:
    assert error.status_code == status
    body = error.to_envelope()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    assert body["type"] == kind
    assert body["message"] == error.message
    assert body["code"]


@pytest.mark.parametrize(("error", "status", "kind"), CASES)
def test_errors_survive_pickling(error: errors.HarmonySpeechError, status: int, kind: str) -> None:
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is type(error)
    assert clone.to_envelope() == error.to_envelope()
    assert clone.headers() == error.headers()


def test_stage_error_names_the_stage() -> None:
    error = errors.PipelineStageError("model crashed", stage="vad")
    assert error.message == "stage 'vad' failed: model crashed"
    assert pickle.loads(pickle.dumps(error)).stage == "vad"


def test_overload_and_auth_headers() -> None:
    assert errors.OverloadedError("x", retry_after_s=2.6).headers() == {"Retry-After": "3"}
    assert errors.AuthenticationError("x").headers() == {"WWW-Authenticate": "Bearer"}
    assert errors.ModelLoadError("x").headers() == {"Retry-After": "5"}
    assert errors.MethodNotAllowedError("x", allowed=("GET", "HEAD")).headers() == {
        "Allow": "GET, HEAD"
    }
    assert errors.MethodNotAllowedError("x").headers() == {}
