"""Metrics: defined once (``catalog``), recorded through Prometheus or Ray (``core``).

Usable from every layer (engine, pipelines, api, serve); it imports neither the engine nor Ray
(the serve layer brings its Ray backend, ``harmonyspeech.serve.metrics``).
"""

from harmonyspeech.telemetry.core import (
    Backend,
    Kind,
    MetricSpec,
    PrometheusBackend,
    active,
    exposition,
    use,
)

__all__ = [
    "Backend",
    "Kind",
    "MetricSpec",
    "PrometheusBackend",
    "active",
    "exposition",
    "use",
]
