"""Failed requests in the log: one line each, except the bursts of an overloaded server."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI

from harmonyspeech import errors
from harmonyspeech.api import errors as api_errors
from harmonyspeech.api.errors import RepeatsSummarised, install_error_handlers

LOGGER = "harmonyspeech.api.errors"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == LOGGER]


def test_a_burst_of_one_kind_logs_a_line_per_window_with_the_count_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    summary = RepeatsSummarised(window_s=10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for second in range(25):  # one refusal a second, then a second kind once
            clock.now = float(second)
            summary.failed(errors.OverloadedError(f"queue full at {second} s"))
        summary.failed(errors.DeadlineExceededError("too slow"))
    assert _lines(caplog) == [
        "request failed: queue full at 0 s",
        "request failed: queue full at 10 s (and 9 more like it in the 10 s before, not logged)",
        "request failed: queue full at 20 s (and 9 more like it in the 10 s before, not logged)",
        "request failed: too slow",
    ]


def test_kinds_differ_by_code_too(caplog: pytest.LogCaptureFixture) -> None:
    summary = RepeatsSummarised(clock=FakeClock())
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        summary.failed(errors.OverloadedError("late", code="deadline_unreachable"))
        summary.failed(errors.OverloadedError("full"))
        summary.failed(errors.OverloadedError("full again"))
    assert _lines(caplog) == ["request failed: late", "request failed: full"]


def _failing_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app, routes=app.router.routes)
    failures = {
        "busy": errors.OverloadedError("queue full", retry_after_s=2),
        "limited": errors.RateLimitError("slow down", retry_after_s=2),
        "broken": errors.PipelineStageError("model crashed", stage="synthesize"),
    }

    @app.get("/{name}")
    async def fail(name: str) -> None:
        raise failures[name]

    return app


async def test_the_app_summarises_refusals_but_logs_every_stage_failure(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_errors, "_load_failures", RepeatsSummarised())
    transport = httpx.ASGITransport(app=_failing_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            statuses = [(await client.get(f"/{name}")).status_code for name in ["busy"] * 5]
            statuses += [(await client.get("/limited")).status_code]
            statuses += [(await client.get("/broken")).status_code for _ in range(2)]
    # Every client still gets its answer; only the log is spared.
    assert statuses == [503] * 5 + [429] + [500] * 2
    assert (
        _lines(caplog)
        == ["request failed: queue full"]
        + ["request failed: stage 'synthesize' failed: model crashed"] * 2
    )
