"""Use a running harmonyspeech Serve app from another Ray driver (a batch job).

The job's requests go to the app's own model deployments, so they share the schedulers (and the
loaded models) with live traffic and queue behind it at their lower priority.
Import this module only after ``harmonyspeech.serve.ray_env.prepare_ray_auth``.
"""

from __future__ import annotations

import logging

import ray
from ray import serve

from harmonyspeech.config import load_config
from harmonyspeech.pipelines.runtime import EngineRuntime
from harmonyspeech.serve.app import model_deployment_name
from harmonyspeech.serve.clients import ServeModelClient

logger = logging.getLogger(__name__)


def connect(address: str) -> None:
    """Join the Ray cluster at ``address`` (``auto`` inside a submitted job)."""
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)


def running_app(app_name: str) -> bool:
    """Whether Serve runs an application called ``app_name`` on the cluster."""
    app = serve.status().applications.get(app_name)
    return app is not None and app.status == "RUNNING"


async def attached_runtime(app_name: str) -> EngineRuntime:
    """An engine runtime over the deployments of the running app ``app_name``."""
    ingress = serve.get_app_handle(app_name)
    config = load_config(await ingress.engine_config.remote())
    clients = {
        model.name: ServeModelClient(
            model.name, serve.get_deployment_handle(model_deployment_name(model.name), app_name)
        )
        for model in config.models
    }
    logger.info("using the running Serve app %r (%d models)", app_name, len(clients))
    return EngineRuntime(config, clients)
