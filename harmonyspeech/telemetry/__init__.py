"""Metrics: defined once (``catalog``), recorded through Prometheus or Ray (``core``).

Usable from every layer (engine, pipelines, api, serve); it imports neither the engine nor Ray
(Ray only when the serve layer selects the Ray backend).
"""

from harmonyspeech.telemetry.core import (
    Backend,
    Kind,
    MetricSpec,
    PrometheusBackend,
    RayBackend,
    active,
    exposition,
    use,
    use_ray,
)

__all__ = [
    "Backend",
    "Kind",
    "MetricSpec",
    "PrometheusBackend",
    "RayBackend",
    "active",
    "exposition",
    "use",
    "use_ray",
]
