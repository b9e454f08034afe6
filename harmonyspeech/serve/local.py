"""``harmonyspeech serve``: run the application on an embedded local Ray (or a given cluster).

Import this module only after ``harmonyspeech.serve.ray_env.prepare_ray_auth``.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time

import ray
from ray import serve

from harmonyspeech.config import EngineConfig
from harmonyspeech.errors import ConfigError
from harmonyspeech.serve.app import APP_NAME, INGRESS_NAME, build_application
from harmonyspeech.serve.listening import HttpAddress, ensure_safe_serving, serve_http_address

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
    listening = serve_http_address() or HttpAddress(server.host, server.port)
    if listening != (server.host, server.port):
        # A cluster's Serve keeps the HTTP options it started with.
        logger.warning(
            "Serve already runs on this cluster and listens on %s:%d; server.host and "
            "server.port (%s:%d) do not apply",
            *listening,
            server.host,
            server.port,
        )
    ensure_safe_serving(config, listening)
    serve.run(build_application(config), name=APP_NAME, route_prefix="/", blocking=False)
    return f"http://{listening.host}:{listening.port}"


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


def stop(config: EngineConfig, *, now: bool = False) -> None:
    """Shut the app down, and with an embedded Ray also Serve and Ray; on a cluster joined
    through ``server.ray.address`` only the app goes, and Serve keeps serving the others.

    Args:
        config: The config the app was started with.
        now: Do not wait for Serve's graceful shutdown, in which model replicas finish the
            work they hold (up to their ``graceful_shutdown_timeout_s``): an embedded Ray is
            stopped with everything in it, and a cluster's app is deleted without waiting.
    """
    if not ray.is_initialized():
        return  # start-up failed before Ray ran (serve.shutdown would start one)
    embedded = config.server.ray.address is None
    if now:
        logger.info("stopping the application, not waiting for the models' work to finish")
    try:
        if embedded and not now:
            serve.shutdown()
        elif not embedded and APP_NAME in serve.status().applications:
            serve.delete(APP_NAME, _blocking=not now)
    finally:
        ray.shutdown()  # an embedded Ray stops; a cluster's driver disconnects


def drain(grace_s: float, force: threading.Event) -> bool:
    """Stop the ingress taking new requests and wait until it has answered those it holds.

    Serve stops every deployment of an app at once, and a model replica with nothing queued
    stops at once: the requests in flight would then lose the models their later stages need
    (a cloned voice's conversion, a transcription after its VAD). So the ingress drains first:
    each replica refuses new requests from its first ``drain`` call on, and the wait ends when
    as many replicas as are running have reported none in flight. A replica at its
    ``max_ongoing_requests`` takes the call only once a request ends, so a call that times out
    is made again until the grace ends.

    Returns:
        Whether every request finished within ``grace_s`` (and before ``force`` was set).
    """
    deadline = time.monotonic() + grace_s
    idle: set[str] = set()
    busy: set[str] = set()
    handle = None
    while not force.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            replicas = _running_replicas(INGRESS_NAME)
            if not replicas:
                return True
            handle = handle or serve.get_deployment_handle(INGRESS_NAME, app_name=APP_NAME)
            replica, in_flight = handle.drain.remote().result(timeout_s=min(left, DRAIN_CALL_S))
        except TimeoutError:
            continue
        except Exception as exc:  # the app may be failing or gone; stopping must go on regardless
            logger.warning("could not drain the ingress: %s", exc)
            return False
        if in_flight == 0:
            idle.add(replica)
            if len(idle) >= replicas:
                logger.info("every request in flight was answered")
                return True
            continue
        if replica not in busy:
            busy.add(replica)
            logger.info("waiting for %d request(s) in flight on ingress %s", in_flight, replica)
        time.sleep(DRAIN_POLL_S)
    logger.warning("stopping with requests still in flight")
    return False


DRAIN_POLL_S = 0.2
DRAIN_CALL_S = 1.0
"""Longest wait for one ``drain`` call, so that a second signal takes effect within it."""


def _running_replicas(deployment: str) -> int:
    app = serve.status().applications.get(APP_NAME)
    if app is None or deployment not in app.deployments:
        return 0
    return app.deployments[deployment].replica_states.get("RUNNING", 0)


def run_until_signalled(config: EngineConfig) -> None:
    """Serve until SIGINT or SIGTERM, then stop cleanly: requests in flight get up to
    ``server.shutdown_grace_s`` to finish, unless a second signal comes."""
    stop_requested, force = threading.Event(), threading.Event()
    grace_s = config.server.shutdown_grace_s

    def _request_stop(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if stop_requested.is_set():
            logger.info("received %s again, stopping now", name)
            force.set()
            return
        logger.info(
            "received %s, shutting down: requests in flight get up to %g s (%s again to stop now)",
            name,
            grace_s,
            name,
        )
        stop_requested.set()

    signals = (signal.SIGINT, signal.SIGTERM)
    # Handlers go in before Ray starts, so a signal during start-up still stops it cleanly, and
    # again afterwards because ray.init replaces the SIGTERM handler with sys.exit.
    previous = {sig: signal.signal(sig, _request_stop) for sig in signals}
    serving = False
    try:
        url = start(config)
        serving = True
        for sig in signals:
            signal.signal(sig, _request_stop)
        logger.info("listening on %s (models load in the background; see /ready)", url)
        print(f"harmonyspeech listening on {url}", flush=True)
        stop_requested.wait()
    finally:
        try:
            if serving and grace_s > 0:
                drain(grace_s, force)
        finally:
            # Past the drain, a further signal interrupts the shutdown itself, as before it.
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            stop(config, now=force.is_set())
        logger.info("stopped")
