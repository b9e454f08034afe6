"""``harmonyspeech serve``: run the application on an embedded local Ray (or a given cluster).

Import this module only after ``harmonyspeech.serve.ray_env.prepare_ray_auth``.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading

import ray
from ray import serve

from harmonyspeech.config import EngineConfig
from harmonyspeech.errors import ConfigError
from harmonyspeech.serve.app import APP_NAME, build_application

logger = logging.getLogger(__name__)


def start(config: EngineConfig) -> str:
    """Start Ray (embedded unless ``server.ray.address`` is set), Serve and the app.

    Returns:
        The base URL the app listens on.
    """
    server = config.server
    embedded = server.ray.address is None
    # Only an embedded Ray takes our metrics port; a cluster's comes from its `ray start`.
    metrics_port = server.ray.metrics_export_port if embedded else None
    if metrics_port is not None:
        ensure_port_free(metrics_port)
    limits = server.rate_limits
    if embedded and limits.enabled and limits.backend == "redis":
        limits.resolved_redis_url()  # fail before Ray starts: its replicas inherit our environment
    ray.init(
        # "local" always starts our own Ray: a bare ray.init() would join any cluster that
        # `ray start` once ran on this machine (even a dead one, and then hang).
        address="local" if embedded else server.ray.address,
        num_cpus=server.ray.num_cpus if embedded else None,
        include_dashboard=False,
        namespace=APP_NAME,
        runtime_env=server.ray.runtime_env or None,
        **({"_metrics_export_port": metrics_port} if metrics_port is not None else {}),
    )
    serve.start(http_options={"host": server.host, "port": server.port})
    serve.run(build_application(config), name=APP_NAME, route_prefix="/", blocking=False)
    return f"http://{server.host}:{server.port}"


def ensure_port_free(port: int) -> None:
    """Fail fast on a taken metrics port: Ray would otherwise hang in start-up and then fail
    with a timeout that does not name the port.

    Raises:
        ConfigError: Something listens on ``port``.
    """
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))  # Ray's metrics agent binds all interfaces
        except OSError as exc:
            message = (
                f"port {port} is in use ({exc.strerror}); choose a free one, or null to let "
                "Ray pick"
            )
            raise ConfigError([("server.ray.metrics_export_port", message)]) from None


def stop() -> None:
    """Shut the app, Serve and (for an embedded Ray) Ray down."""
    if not ray.is_initialized():
        return  # start-up failed before Ray ran (serve.shutdown would start one)
    try:
        serve.shutdown()
    finally:
        ray.shutdown()


def run_until_signalled(config: EngineConfig) -> None:
    """Serve until SIGINT or SIGTERM, then stop cleanly."""
    stop_requested = threading.Event()

    def _request_stop(signum: int, _frame: object) -> None:
        logger.info("received %s, shutting down", signal.Signals(signum).name)
        stop_requested.set()

    signals = (signal.SIGINT, signal.SIGTERM)
    # Handlers go in before Ray starts, so a signal during start-up still stops it cleanly, and
    # again afterwards because ray.init replaces the SIGTERM handler with sys.exit.
    previous = {sig: signal.signal(sig, _request_stop) for sig in signals}
    try:
        url = start(config)
        for sig in signals:
            signal.signal(sig, _request_stop)
        logger.info("listening on %s (models load in the background; see /ready)", url)
        print(f"harmonyspeech listening on {url}", flush=True)
        stop_requested.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop()
        logger.info("stopped")
