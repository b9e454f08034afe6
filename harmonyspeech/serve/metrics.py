"""Metrics of Serve replicas through Ray: ``ray.serve.metrics`` instruments, which every node's
Ray metrics agent exports (``ray_`` prefix; ``deployment``, ``replica`` and ``application`` tags).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import prometheus_client
from ray.serve import metrics as serve_metrics

from harmonyspeech import telemetry
from harmonyspeech.telemetry.core import Instruments, Kind, MetricSpec

RAY_EXPOSITION_NOTE = (
    b"# harmonyspeech_* metrics of this process are exported by Ray's metrics agent, as\n"
    b"# ray_harmonyspeech_*: scrape the metrics export port of every Ray node.\n"
)


class RayBackend:
    """``ray.serve.metrics`` instruments: exported by the Ray node's metrics agent.

    Inside a Serve replica each metric also carries the replica's ``deployment``, ``replica``
    and ``application`` tags. ``exposition`` (the process's own ``GET /metrics``) then holds
    only ``prometheus_client``'s process collectors, after a note saying where to scrape.

    Ray's agent drops a gauge series that was not reported for two export intervals (20 s by
    default), so a background thread reports the last value of every gauge series again every
    ``gauge_refresh_s``: an idle model's queue depth stays visible (as 0).
    """

    name = "ray"

    def __init__(self, *, gauge_refresh_s: float = 5.0) -> None:
        self._prom = prometheus_client
        self._serve_metrics = serve_metrics
        self._instruments = Instruments(self._make)
        self._gauge_refresh_s = gauge_refresh_s
        self._gauges: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[MetricSpec, float]] = {}
        self._gauges_lock = threading.Lock()
        self._refresher: threading.Thread | None = None

    def _make(self, spec: MetricSpec) -> Any:
        m = self._serve_metrics
        if spec.kind is Kind.COUNTER:
            return m.Counter(spec.name, description=spec.description, tag_keys=spec.tags)
        if spec.kind is Kind.GAUGE:
            return m.Gauge(spec.name, description=spec.description, tag_keys=spec.tags)
        return m.Histogram(
            spec.name,
            description=spec.description,
            boundaries=list(spec.boundaries),
            tag_keys=spec.tags,
        )

    def record(self, spec: MetricSpec, value: float, tags: Mapping[str, str]) -> None:
        if spec.kind is Kind.COUNTER and value <= 0:
            return  # Ray refuses non-positive increments

        def write(instrument: Any) -> None:
            # ray.serve.metrics adds its context tags to the dict it is given: pass a copy.
            if spec.kind is Kind.COUNTER:
                instrument.inc(value, tags=dict(tags))
            elif spec.kind is Kind.GAUGE:
                instrument.set(value, tags=dict(tags))
            else:
                instrument.observe(value, tags=dict(tags))

        if spec.kind is not Kind.GAUGE:
            self._instruments.guarded(spec, write)
            return
        # Under the lock, so that a refresh never reports a value older than this one.
        with self._gauges_lock:
            self._instruments.guarded(spec, write)
            self._gauges[(spec.name, tuple(sorted(tags.items())))] = (spec, value)
            if self._refresher is None:
                self._refresher = threading.Thread(
                    target=self._refresh, name="metrics-gauge-refresh", daemon=True
                )
                self._refresher.start()

    def _refresh(self) -> None:
        while True:
            time.sleep(self._gauge_refresh_s)
            with self._gauges_lock:
                for (_, tags), (spec, value) in self._gauges.items():
                    self._instruments.guarded(
                        spec, lambda gauge, v=value, t=tags: gauge.set(v, tags=dict(t))
                    )

    def exposition(self) -> bytes:
        return RAY_EXPOSITION_NOTE + bytes(self._prom.generate_latest(self._prom.REGISTRY))


def use_ray() -> None:
    """Record through Ray from now on (called as a replica starts); keeps an already selected
    Ray backend."""
    if telemetry.active().name != RayBackend.name:
        telemetry.use(RayBackend())
