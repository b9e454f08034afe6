"""Failed requests in the log: one line each, except the bursts of an overloaded server."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from fastapi import FastAPI

from harmonyspeech import errors
from harmonyspeech.api import errors as api_errors
from harmonyspeech.api.errors import RepeatsSummarised, install_error_handlers

LOGGER = "harmonyspeech.api.errors"


WINDOW_S = 0.05


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == LOGGER]


async def test_a_burst_logs_its_first_failure_then_the_count_when_the_window_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    summary = RepeatsSummarised(window_s=WINDOW_S)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for wait in range(5):  # the same refusal, naming another wait each time
            summary.failed(errors.OverloadedError(f"the queue holds about {wait} s of work"))
        await asyncio.sleep(3 * WINDOW_S)  # the event loop closes the window
        summary.failed(errors.OverloadedError("the queue holds about 9 s of work"))
        await asyncio.sleep(3 * WINDOW_S)  # a window with nothing held back adds no line
    assert _lines(caplog) == [
        "request failed: the queue holds about 0 s of work",
        "4 more requests failed like this in the 0.05 s after it: "
        "the queue holds about 0 s of work",
        "request failed: the queue holds about 9 s of work",
    ]


async def test_kinds_differ_by_class_code_and_words(caplog: pytest.LogCaptureFixture) -> None:
    summary = RepeatsSummarised(window_s=60.0)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        summary.failed(errors.OverloadedError("full", code="shutting_down"))
        summary.failed(errors.OverloadedError("full"))
        summary.failed(errors.DeadlineExceededError("model 'a': deadline passed"))
        summary.failed(errors.DeadlineExceededError("model 'b': deadline passed"))
        summary.failed(errors.DeadlineExceededError("model 'b': deadline passed"))
    assert _lines(caplog) == [
        "request failed: full",
        "request failed: full",
        "request failed: model 'a': deadline passed",
        "request failed: model 'b': deadline passed",
    ]


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
    monkeypatch.setattr(api_errors, "_load_failures", RepeatsSummarised(window_s=0.2))
    transport = httpx.ASGITransport(app=_failing_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            statuses = [(await client.get(f"/{name}")).status_code for name in ["busy"] * 5]
            statuses += [(await client.get("/limited")).status_code]
            statuses += [(await client.get("/broken")).status_code for _ in range(2)]
            await asyncio.sleep(0.3)  # the event loop closes the window
    # Every client still gets its answer; only the log is spared.
    assert statuses == [503] * 5 + [429] + [500] * 2
    assert _lines(caplog) == [
        "request failed: queue full",
        "request failed: stage 'synthesize' failed: model crashed",
        "request failed: stage 'synthesize' failed: model crashed",
        "4 more requests failed like this in the 0.2 s after it: queue full",
    ]
