"""The deployment classes. They are plain classes; ``serve.app`` wraps them at build time."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from ray import serve
from ray.exceptions import TaskCancelledError
from ray.serve.handle import DeploymentHandle

from harmonyspeech.api.app import create_app
from harmonyspeech.api.middleware import Lifecycle
from harmonyspeech.api.streaming import broke_a_stream
from harmonyspeech.config import EngineConfig, ModelConfig
from harmonyspeech.engine.client import worker_status
from harmonyspeech.engine.items import Priority
from harmonyspeech.engine.worker import ModelWorker, WorkerState
from harmonyspeech.errors import HarmonySpeechError
from harmonyspeech.models.process_env import apply_model_env_defaults
from harmonyspeech.models.registry import create_adapter
from harmonyspeech.pipelines.runtime import EngineRuntime
from harmonyspeech.serve.clients import Refusal, ServeModelClient
from harmonyspeech.serve.metrics import use_ray

logger = logging.getLogger(__name__)

PACKAGE_LOGGER = "harmonyspeech"


class ModelServer:
    """One replica of one model instance: adapter, scheduler and inference thread.

    Every request a replica receives goes through its scheduler, so batches form across all the
    requests (and clients) routed to it. The model loads in the background; ``status`` reports
    progress and ``/ready`` waits for it.
    """

    def __init__(self, model: ModelConfig):
        apply_model_env_defaults()
        log_through_serve()
        # Metrics go through Ray's metrics agent, tagged with this deployment and replica.
        use_ray()
        self.config = model
        self.worker = ModelWorker(create_adapter(model), model.batching, name=model.name)
        self.worker.start()

    async def infer(
        self, payload: Any, priority: int, timeout_s: float | None, admitted: bool = False
    ) -> Any:
        """The item's result, or its ``Refusal``; a model failure is raised."""
        try:
            return await self.worker.infer(
                payload, priority=Priority(priority), timeout_s=timeout_s, admitted=admitted
            )
        except HarmonySpeechError as exc:
            if Refusal.expected(exc):
                return Refusal(exc)
            raise

    async def status(self) -> dict[str, Any]:
        return worker_status(self.worker)

    def check_health(self) -> None:
        """Serve restarts a replica whose inference thread died. A model that failed to load
        ends its thread too, but stays up as ``failed`` (on ``/ready``, and a 503 for its
        requests): a new replica would only repeat the same load, and log its traceback,
        every few seconds until the weights or the config are fixed and the app redeployed."""
        if self.worker.state is WorkerState.FAILED:
            return
        if not self.worker.alive():
            raise RuntimeError(f"inference thread of {self.config.name!r} is not running")

    def __del__(self) -> None:
        self.worker.stop(timeout=5)


SERVE_LOGGER = "ray.serve"
"""The logger Serve sets up in each replica: its log file, and stderr."""


def log_through_serve() -> None:
    """Send this package's log records of a replica where Serve sends its own, at its level.

    Serve sets up only its own logger in a replica; records of other loggers reach the root
    logger, which shows warnings only, so "model loaded", say, went nowhere.
    """
    serve_logger = logging.getLogger(SERVE_LOGGER)
    package = logging.getLogger(PACKAGE_LOGGER)
    package.setLevel(serve_logger.getEffectiveLevel())
    package.handlers = list(serve_logger.handlers)
    package.propagate = not package.handlers


class StreamsBrokenOffLoggedOnce(logging.Filter):
    """Drops Serve's traceback of a stream the app broke off on purpose.

    Serve logs every exception that leaves a replica with its traceback ("Request failed."); a
    speech stream broken off after its start (its deadline passed, a model failed) was already
    logged by the app in one line, and is no fault of the server's.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and broke_a_stream(record.exc_info[1]))


_QUIET_BROKEN_STREAMS = StreamsBrokenOffLoggedOnce()


class CancelledReceiveIsDisconnect:
    """ASGI middleware: a ``receive`` that Ray cancelled is the client's disconnect.

    When a request is cancelled (its client hung up), Serve's ``receive`` may raise Ray's
    ``TaskCancelledError`` instead of answering ``http.disconnect``; Starlette then failed the
    response as an unhandled error, logged with its traceback and counted as a 500.
    """

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def receive_or_disconnect() -> dict[str, Any]:
            try:
                return await receive()
            except TaskCancelledError:
                return {"type": "http.disconnect"}

        await self.app(scope, receive_or_disconnect, send)


class Ingress:
    """The HTTP front: the FastAPI app over clients of every model deployment."""

    def __init__(self, config: EngineConfig, models: dict[str, DeploymentHandle]):
        use_ray()
        log_through_serve()
        logging.getLogger(SERVE_LOGGER).addFilter(_QUIET_BROKEN_STREAMS)
        clients = {name: ServeModelClient(name, handle) for name, handle in models.items()}
        self.runtime = EngineRuntime(config, clients)
        self.lifecycle = Lifecycle()

    async def drain(self) -> tuple[str, int]:
        """Take no new requests from now on (503), and report this replica's id and how many
        requests it is still answering: a graceful shutdown calls it until every replica has
        reported none, and only then stops the models those requests need."""
        self.lifecycle.draining = True
        return serve.get_replica_context().replica_id.unique_id, self.lifecycle.in_flight

    async def engine_config(self) -> dict[str, Any]:
        """The config this app runs, for batch jobs that attach to it (key hashes only)."""
        return self.runtime.config.model_dump(mode="json")

    def __serve_build_asgi_app__(self) -> Any:
        app = create_app(self.runtime, lifecycle=self.lifecycle)
        app.add_middleware(CancelledReceiveIsDisconnect)
        return app
