"""Use a running harmonyspeech Serve app from another Ray driver (a batch job).

The job's requests go to the app's own model deployments, so they share the schedulers (and the
loaded models) with live traffic and queue behind it at their lower priority.
Import this module only after ``harmonyspeech.serve.ray_env.prepare_ray_auth``.
"""

from __future__ import annotations

import asyncio
import logging

import ray
from ray import serve

from harmonyspeech.config import load_config
from harmonyspeech.errors import ModelLoadError
from harmonyspeech.pipelines.runtime import EngineRuntime
from harmonyspeech.serve.app import model_deployment_name
from harmonyspeech.serve.clients import ServeModelClient
from harmonyspeech.serve.metrics import use_ray

logger = logging.getLogger(__name__)


def connect(address: str) -> None:
    """Join the Ray cluster at ``address`` (``auto`` inside a submitted job)."""
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)


ATTACHABLE = frozenset({"RUNNING", "DEPLOYING", "UNHEALTHY"})
"""App states a job attaches in: a job that starts while the app deploys (or during a rolling
update, or while a replica is being replaced) uses it once its models are ready, rather than
loading a second copy of every model itself."""


def running_app(app_name: str) -> bool:
    """Whether Serve runs, or is deploying, an application called ``app_name``."""
    app = serve.status().applications.get(app_name)
    return app is not None and app.status in ATTACHABLE


async def attached_runtime(app_name: str, timeout_s: float) -> EngineRuntime:
    """An engine runtime over the deployments of the app ``app_name``.

    Raises:
        ModelLoadError: Its ingress did not answer within ``timeout_s`` (still deploying).
    """
    # The job's pipelines record their metrics (audio out, stage latency) through Ray too.
    use_ray()
    ingress = serve.get_app_handle(app_name)
    try:
        config = load_config(await asyncio.wait_for(ingress.engine_config.remote(), timeout_s))
    except TimeoutError:
        raise ModelLoadError(
            f"the Serve app {app_name!r} did not answer within {timeout_s:.0f} s"
        ) from None
    clients = {
        model.name: ServeModelClient(
            model.name, serve.get_deployment_handle(model_deployment_name(model.name), app_name)
        )
        for model in config.models
    }
    logger.info("using the running Serve app %r (%d models)", app_name, len(clients))
    return EngineRuntime(config, clients)
