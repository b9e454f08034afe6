"""A speech stream that fails after its start (real tiny models, no Ray): it breaks off rather
than ending as a short file that would pass for a success, it is logged once, and Serve's own
traceback of it is dropped."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from harmonyspeech.api.routes import speech as speech_route
from harmonyspeech.api.streaming import StreamBrokenOff
from harmonyspeech.config import load_config
from harmonyspeech.pipelines.runtime import LocalEngine
from harmonyspeech.serve.deployments import StreamsBrokenOffLoggedOnce
from tests.conftest import TinyWeights, served_config_data
from tests.helpers import asgi_client

# Eight pieces of about 300 characters (pieces are cut at about 256).
TEXT = " ".join(f"Part {i} {'goes on ' * 35}to its end." for i in range(8))


@pytest.fixture
def engine(tiny_weights: TinyWeights) -> Iterator[LocalEngine]:
    with LocalEngine(load_config(served_config_data(tiny_weights))) as local:
        yield local


def _serve_log_record(exc: BaseException) -> logging.LogRecord:
    """What Serve's replica logs for an exception that left the app ("Request failed.")."""
    exc_info = (type(exc), exc, exc.__traceback__)
    return logging.LogRecord(
        "ray.serve", logging.ERROR, __file__, 0, "Request failed.", (), exc_info
    )


def _wrapped(exc: BaseException) -> BaseException:
    try:
        raise RuntimeError("a framework's own error") from exc
    except RuntimeError as wrapper:
        return wrapper


def _stop_once_the_stream_starts(
    engine: LocalEngine, name: str, monkeypatch: pytest.MonkeyPatch
) -> threading.Thread:
    """Stops the model once the speech route has its first sentence (its 200 goes out then).

    Stopping it after its first batch instead raced with the pipeline: under load, the next
    sentence's failure could come before the first one was out, which is an error response."""
    worker, began, started = engine.workers[name], threading.Event(), speech_route.started

    async def started_then_signal(items: Any) -> Any:
        out = await started(items)
        began.set()
        return out

    monkeypatch.setattr(speech_route, "started", started_then_signal)

    def stop() -> None:
        if not began.wait(60):
            raise TimeoutError("the stream never started")
        worker.stop()

    watcher = threading.Thread(target=stop, daemon=True)
    watcher.start()
    return watcher


async def test_a_stream_whose_model_stops_breaks_off_and_is_logged_once(
    engine: LocalEngine, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # At a quarter speed each piece is over the synthesizer's batch budget, so it runs alone: the
    # synthesizer goes away with most of them still to come.
    body = {"model": "tts-1", "voice": "alloy", "input": TEXT, "speed": 0.25, "stream": True}
    watcher = _stop_once_the_stream_starts(engine, "melo-en", monkeypatch)
    async with asgi_client(engine.runtime) as http:
        # Raised, not answered: its 200 and first sentences were out (an error before them is
        # an error response).
        with pytest.raises(StreamBrokenOff, match="shutting down") as broken:
            await http.post("/v1/audio/speech", json=body)
    await asyncio.to_thread(watcher.join, 60)
    warnings = [r for r in caplog.records if "stream broken off" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    # Not again as an "unhandled error" with its traceback.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []

    quiet = StreamsBrokenOffLoggedOnce()
    for seen_by_serve in (
        broken.value,
        _wrapped(broken.value),
        ExceptionGroup("the response's tasks", [broken.value]),
    ):
        assert not quiet.filter(_serve_log_record(seen_by_serve))
    # Any other exception leaving the app keeps its traceback.
    assert quiet.filter(_serve_log_record(ValueError("a bug")))
