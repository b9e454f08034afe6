"""The metrics facade on its Prometheus backend: definitions, tags, buckets, and what the
worker and the error handlers record through it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from prometheus_client import CollectorRegistry, Gauge

from harmonyspeech import telemetry
from harmonyspeech.api.errors import install_error_handlers
from harmonyspeech.api.streaming import StreamBrokenOff
from harmonyspeech.audio import Audio
from harmonyspeech.config import BatchingPolicy, SileroVadModelConfig
from harmonyspeech.engine.worker import ModelWorker
from harmonyspeech.errors import DeadlineExceededError, NotFoundError
from harmonyspeech.models.silero_vad import SileroVadAdapter
from harmonyspeech.models.types import VadRequest
from harmonyspeech.pipelines.context import PipelineContext
from harmonyspeech.pipelines.metering import timed_stream
from harmonyspeech.pipelines.spec import PipelineSpec, StageSpec
from harmonyspeech.telemetry import Kind, MetricSpec, PrometheusBackend
from harmonyspeech.telemetry import catalog as metrics
from tests.unit.vad_clips import clip

COUNTER = MetricSpec("harmonyspeech_test_things", Kind.COUNTER, "Things", ("colour",))
GAUGE = MetricSpec("harmonyspeech_test_level", Kind.GAUGE, "Level", ("tank",))
HISTOGRAM = MetricSpec(
    "harmonyspeech_test_seconds", Kind.HISTOGRAM, "Durations", ("stage",), (0.1, 1.0, 10.0)
)


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    """A fresh registry as the process's metrics backend, for the test's duration."""
    fresh = CollectorRegistry()
    previous = telemetry.use(PrometheusBackend(fresh))
    yield fresh
    telemetry.use(previous)


def test_counters_gauges_and_histograms_land_with_their_tags(registry: CollectorRegistry) -> None:
    COUNTER.record(2, colour="red")
    COUNTER.record(0.5, colour="red")
    COUNTER.record(1, colour="blue")
    GAUGE.record(7, tank="a")
    GAUGE.record(3, tank="a")
    for value in (0.05, 0.1, 0.5, 20.0):
        HISTOGRAM.record(value, stage="vad")

    value = registry.get_sample_value
    assert value("harmonyspeech_test_things_total", {"colour": "red"}) == 2.5
    assert value("harmonyspeech_test_things_total", {"colour": "blue"}) == 1.0
    assert value("harmonyspeech_test_level", {"tank": "a"}) == 3.0
    buckets = {
        le: value("harmonyspeech_test_seconds_bucket", {"stage": "vad", "le": le})
        for le in ("0.1", "1.0", "10.0", "+Inf")
    }
    assert buckets == {"0.1": 2.0, "1.0": 3.0, "10.0": 3.0, "+Inf": 4.0}  # cumulative
    assert value("harmonyspeech_test_seconds_count", {"stage": "vad"}) == 4.0
    assert value("harmonyspeech_test_seconds_sum", {"stage": "vad"}) == pytest.approx(20.65)


def test_tag_values_become_strings_and_counters_ignore_zero(registry: CollectorRegistry) -> None:
    metrics.ERRORS.record(1, type="server_error", code="x", status=503)
    metrics.ERRORS.record(0, type="server_error", code="y", status=503)
    labels = {"type": "server_error", "code": "x", "status": "503"}
    assert registry.get_sample_value("harmonyspeech_errors_total", labels) == 1.0
    labels["code"] = "y"
    assert registry.get_sample_value("harmonyspeech_errors_total", labels) is None


def test_recording_needs_exactly_the_defined_tags(registry: CollectorRegistry) -> None:
    with pytest.raises(ValueError, match="takes tags"):
        COUNTER.record(1)
    with pytest.raises(ValueError, match="takes tags"):
        COUNTER.record(1, colour="red", size="xl")


@pytest.mark.parametrize(
    ("name", "kind", "tags", "boundaries", "problem"),
    [
        ("other_metric", Kind.GAUGE, (), (), "must match"),
        ("harmonyspeech_things_total", Kind.COUNTER, (), (), "_total"),
        ("harmonyspeech_h", Kind.HISTOGRAM, (), (), "boundaries"),
        ("harmonyspeech_h", Kind.HISTOGRAM, (), (0.0, 1.0), "boundaries"),
        ("harmonyspeech_h", Kind.HISTOGRAM, (), (1.0, 1.0), "boundaries"),
        ("harmonyspeech_g", Kind.GAUGE, (), (1.0,), "no boundaries"),
        ("harmonyspeech_g", Kind.GAUGE, ("replica",), (), "tags"),
        ("harmonyspeech_g", Kind.GAUGE, ("a", "a"), (), "tags"),
    ],
)
def test_invalid_definitions_are_refused(
    name: str, kind: Kind, tags: tuple[str, ...], boundaries: tuple[float, ...], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        MetricSpec(name, kind, "help", tags, boundaries)


def test_the_catalog_is_valid_for_both_backends() -> None:
    names = [spec.name for spec in metrics.ALL]
    assert len(set(names)) == len(names)
    # Ray refuses a histogram boundary <= 0 and a tag its Serve metrics reserve.
    for spec in metrics.ALL:
        assert all(b > 0 for b in spec.boundaries)
        assert not {"deployment", "replica", "application"} & set(spec.tags)


def test_a_backend_failure_is_logged_once_and_never_raised(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    Gauge("harmonyspeech_test_things_total", "squats on the counter's name", registry=registry)
    with caplog.at_level(logging.ERROR, logger="harmonyspeech.telemetry.core"):
        COUNTER.record(1, colour="red")
        COUNTER.record(1, colour="red")
    failures = [r for r in caplog.records if "could not record" in r.getMessage()]
    assert len(failures) == 1


def test_exposition_is_the_backends_prometheus_text(registry: CollectorRegistry) -> None:
    GAUGE.record(4, tank="b")
    text = telemetry.exposition().decode()
    assert "# HELP harmonyspeech_test_level Level" in text
    assert 'harmonyspeech_test_level{tank="b"} 4.0' in text


def test_the_default_backend_is_prometheus_on_the_global_registry() -> None:
    previous = telemetry.use(None)
    try:
        backend = telemetry.active()
        assert isinstance(backend, PrometheusBackend)
        assert telemetry.active() is backend
    finally:
        telemetry.use(previous)


def test_the_worker_records_queue_depth_and_batch_metrics(registry: CollectorRegistry) -> None:
    config = SileroVadModelConfig(name="vad", family="silero-vad", num_threads=1)
    adapter = SileroVadAdapter(config)
    worker = ModelWorker(adapter, BatchingPolicy(max_batch_size=8, max_wait_ms=0), name="vad")
    requests = [VadRequest(clip(name), 16000) for name in ("short", "two_phrases", "short")]
    try:
        futures = [worker.submit(r) for r in requests]
        tags = {"model": "vad"}
        assert registry.get_sample_value("harmonyspeech_queue_depth", tags) == 3.0
        worker.start()  # queued before the thread starts: one batch of three
        for future in futures:
            future.result(timeout=60)
    finally:
        worker.stop()

    value = registry.get_sample_value
    assert value("harmonyspeech_queue_depth", tags) == 0.0
    assert value("harmonyspeech_batch_size_count", tags) == 1.0
    assert value("harmonyspeech_batch_size_sum", tags) == 3.0
    costs = [adapter.cost(r) for r in requests]
    efficiency = sum(costs) / (len(costs) * max(costs))
    assert 0 < efficiency < 1  # clips of different lengths pad
    assert value("harmonyspeech_batch_padding_efficiency_sum", tags) == pytest.approx(efficiency)
    assert value("harmonyspeech_batch_latency_seconds_count", tags) == 1.0
    assert value("harmonyspeech_batch_latency_seconds_sum", tags) > 0
    wait_tags = {"model": "vad", "priority": "interactive"}
    assert value("harmonyspeech_queue_wait_seconds_count", wait_tags) == 3.0


def _error_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app, routes=app.router.routes)

    @app.get("/missing")
    async def missing() -> None:
        raise NotFoundError("no such thing")

    @app.get("/broken-stream")
    async def broken_stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"audio"
            # As the speech route breaks off its stream.
            raise StreamBrokenOff("too slow") from DeadlineExceededError("too slow")

        return StreamingResponse(chunks())

    return app


async def test_errors_are_counted_once_by_type_code_and_status(
    registry: CollectorRegistry,
) -> None:
    transport = httpx.ASGITransport(app=_error_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/missing")).status_code == 404
        # The error breaks off a started stream: counted by its own type, not as a 500.
        await http.get("/broken-stream")

    def count(type_: str, code: str, status: str) -> float | None:
        labels = {"type": type_, "code": code, "status": status}
        return registry.get_sample_value("harmonyspeech_errors_total", labels)

    assert count("invalid_request_error", "not_found", "404") == 1.0
    assert count("server_error", "deadline_exceeded", "504") == 1.0
    assert count("server_error", "internal_error", "500") is None


async def test_a_slow_reader_of_a_stream_does_not_count_as_stage_time(
    registry: CollectorRegistry,
) -> None:
    stage = StageSpec(kind="transcribe", model="whisper")
    pipeline = PipelineSpec("stt", (), "", (stage,), produces="transcript")
    ctx = PipelineContext.with_timeout(None, audio=Audio(np.zeros(16000 * 4, np.float32), 16000))

    async def parts() -> AsyncIterator[int]:
        for part in range(3):
            await asyncio.sleep(0.01)  # the stage's own work
            yield part

    received = []
    async for part in timed_stream(pipeline, stage, ctx, parts()):
        received.append(part)
        await asyncio.sleep(0.3)  # the client reads slowly

    value = registry.get_sample_value
    labels = {"pipeline": "stt", "stage": "transcribe"}
    assert received == [0, 1, 2]
    assert value("harmonyspeech_stage_latency_seconds_count", labels) == 1.0
    assert 0.03 <= value("harmonyspeech_stage_latency_seconds_sum", labels) < 0.3
    assert value("harmonyspeech_audio_input_seconds_total", {"pipeline": "stt"}) == 4.0
    rtf = {"pipeline": "stt", "audio": "input"}
    assert value("harmonyspeech_real_time_factor_sum", rtf) < 0.3 / 4
