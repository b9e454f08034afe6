"""Metric definitions and the two backends that record them.

A metric is defined once, as a ``MetricSpec`` (name, description, tag keys and, for histograms,
bucket boundaries), and recorded with ``spec.record(value, **tags)``. Where the value goes
depends on the process-wide backend:

- ``PrometheusBackend`` (the default): ``prometheus_client`` instruments in a registry, served
  as Prometheus text by ``GET /metrics`` of the process (in-process engine, tests, batch jobs
  without Ray).
- ``harmonyspeech.serve.metrics.RayBackend``: ``ray.serve.metrics`` instruments, exported by
  the node's Ray metrics agent. The serve layer selects it (``use``) when a replica starts, so
  this package never imports Ray.
Recording never fails a request: a backend error is logged (once per metric) and dropped.
"""

from __future__ import annotations

import enum
import itertools
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger(__name__)

_NAME = re.compile(r"harmonyspeech_[a-z0-9_]+")
_TAG = re.compile(r"[a-z_][a-z0-9_]*")
_RESERVED_TAGS = {"deployment", "replica", "application", "route", "le", "quantile"}


class Kind(enum.StrEnum):
    """What recording a value means."""

    COUNTER = "counter"
    """Add the value (> 0) to a running total; exported with a ``_total`` suffix."""

    GAUGE = "gauge"
    """Set the current value."""

    HISTOGRAM = "histogram"
    """Count the value into buckets (and a sum and a count)."""


@dataclass(frozen=True)
class MetricSpec:
    """One metric: defined once, recorded through whichever backend is active.

    Attributes:
        name: ``harmonyspeech_*``; a counter's name leaves out ``_total`` (backends add it).
        kind: Counter, gauge or histogram.
        description: Help text of the metric.
        tags: Tag (label) keys; every recording passes exactly these.
        boundaries: Upper bounds of a histogram's buckets, increasing and positive (Ray's
            rule, applied to both backends so they bucket alike); empty for other kinds.
    """

    name: str
    kind: Kind
    description: str
    tags: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"metric name {self.name!r} must match {_NAME.pattern}")
        if self.kind is Kind.COUNTER and self.name.endswith("_total"):
            raise ValueError(f"counter {self.name!r}: leave out '_total', backends add it")
        bad = [t for t in self.tags if not _TAG.fullmatch(t) or t in _RESERVED_TAGS]
        if bad or len(set(self.tags)) != len(self.tags):
            raise ValueError(f"metric {self.name!r}: invalid or duplicate tags {self.tags}")
        if self.kind is Kind.HISTOGRAM:
            bounds = self.boundaries
            if not bounds or bounds[0] <= 0 or any(b >= a for b, a in itertools.pairwise(bounds)):
                raise ValueError(f"histogram {self.name!r}: boundaries must increase from > 0")
        elif self.boundaries:
            raise ValueError(f"{self.kind} {self.name!r} takes no boundaries")

    def record(self, value: float, **tags: object) -> None:
        """Add (counter), set (gauge) or observe (histogram) ``value`` with these tags.

        Tag values are turned into strings.

        Raises:
            ValueError: The tags are not exactly ``self.tags``.
        """
        if set(tags) != set(self.tags):
            raise ValueError(f"metric {self.name!r} takes tags {self.tags}, got {tuple(tags)}")
        active().record(self, float(value), {key: str(v) for key, v in tags.items()})


class Backend(Protocol):
    """Where recorded values go."""

    name: str

    def record(self, spec: MetricSpec, value: float, tags: Mapping[str, str]) -> None:
        """Record one value; ``tags`` holds exactly ``spec.tags``."""
        ...

    def exposition(self) -> bytes:
        """Prometheus text that ``GET /metrics`` of this process serves."""
        ...


class Instruments:
    """Backend instruments made on first use, one per metric name (thread-safe)."""

    def __init__(self, make: Callable[[MetricSpec], Any]):
        self._make = make
        self._made: dict[str, tuple[MetricSpec, Any]] = {}
        self._failed: set[str] = set()
        self._lock = threading.Lock()

    def get(self, spec: MetricSpec) -> Any:
        with self._lock:
            made = self._made.get(spec.name)
            if made is None:
                made = self._made[spec.name] = (spec, self._make(spec))
        if made[0] != spec:
            raise ValueError(f"metric {spec.name!r} is defined twice, differently")
        return made[1]

    def guarded(self, spec: MetricSpec, write: Callable[[Any], None]) -> None:
        """Write to the spec's instrument; log a failure once per metric instead of raising."""
        try:
            write(self.get(spec))
        except Exception:
            if spec.name not in self._failed:
                self._failed.add(spec.name)
                logger.exception(
                    "could not record metric %r; further failures are silent", spec.name
                )


class PrometheusBackend:
    """``prometheus_client`` instruments in ``registry`` (the library's global one by default).

    Create one backend per registry: a registry refuses a metric name twice.
    """

    name = "prometheus"

    def __init__(self, registry: Any = None):
        import prometheus_client

        self._prom = prometheus_client
        self.registry = registry if registry is not None else prometheus_client.REGISTRY
        self._instruments = Instruments(self._make)

    def _make(self, spec: MetricSpec) -> Any:
        common = {"labelnames": spec.tags, "registry": self.registry}
        if spec.kind is Kind.COUNTER:
            return self._prom.Counter(spec.name, spec.description, **common)
        if spec.kind is Kind.GAUGE:
            return self._prom.Gauge(spec.name, spec.description, **common)
        return self._prom.Histogram(spec.name, spec.description, buckets=spec.boundaries, **common)

    def record(self, spec: MetricSpec, value: float, tags: Mapping[str, str]) -> None:
        if spec.kind is Kind.COUNTER and value <= 0:
            return  # as Ray: counters only grow, and a zero adds nothing

        def write(instrument: Any) -> None:
            target = instrument.labels(**tags) if spec.tags else instrument
            if spec.kind is Kind.COUNTER:
                target.inc(value)
            elif spec.kind is Kind.GAUGE:
                target.set(value)
            else:
                target.observe(value)

        self._instruments.guarded(spec, write)

    def exposition(self) -> bytes:
        return bytes(self._prom.generate_latest(self.registry))


_lock = threading.Lock()
_active: Backend | None = None
_default_prometheus: PrometheusBackend | None = None


def active() -> Backend:
    """The process's backend; a ``PrometheusBackend`` on the global registry unless another
    was selected."""
    global _active, _default_prometheus
    backend = _active
    if backend is not None:
        return backend
    with _lock:
        if _active is None:
            if _default_prometheus is None:
                _default_prometheus = PrometheusBackend()
            _active = _default_prometheus
        return _active


def use(backend: Backend | None) -> Backend | None:
    """Make ``backend`` the process's backend (None: back to the default); returns the
    previous selection (for tests that swap and restore)."""
    global _active
    with _lock:
        previous, _active = _active, backend
    return previous


def exposition() -> bytes:
    """What ``GET /metrics`` of this process serves."""
    return active().exposition()
