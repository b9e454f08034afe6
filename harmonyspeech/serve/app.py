"""Build the Ray Serve application from an engine config.

One deployment per model instance (``model-<name>``) and one FastAPI ingress wired to them with
handles. ``build_app`` is the import path for ``serve run`` / ``serve deploy``::

    import_path: harmonyspeech.serve.app:build_app
    args: {config_path: /path/to/engine.yaml}
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ray import serve
from ray.serve import Application

from harmonyspeech.api.auth import with_resolved_keys
from harmonyspeech.config import DeploymentOptions, EngineConfig, load_config
from harmonyspeech.pipelines.spec import build_catalog
from harmonyspeech.serve.deployments import Ingress, ModelServer
from harmonyspeech.serve.listening import ensure_safe_serving, serve_http_address

logger = logging.getLogger(__name__)

CONFIG_ENV = "HARMONYSPEECH_CONFIG"
APP_NAME = "harmonyspeech"
"""Name of the Serve application (``harmonyspeech serve``, generated Serve configs, batch jobs)."""
INGRESS_NAME = "ingress"
BACKPRESSURE_RETRY_S = 1.0
"""``Retry-After`` of Serve's 503 when a deployment's ``max_queued_requests`` is full."""


def model_deployment_name(model: str) -> str:
    """The Serve deployment of model instance ``model``."""
    return f"model-{model}"


def build_app(args: dict[str, Any]) -> Application:
    """Application builder for ``serve run``/``serve deploy``.

    Args:
        args: ``{"config_path": PATH}``, or ``{"config": {...}}`` with the config inline. With
            neither, the path comes from the ``HARMONYSPEECH_CONFIG`` environment variable.
    """
    if "config" in args:
        config = load_config(args["config"])
    else:
        path = args.get("config_path") or os.environ.get(CONFIG_ENV)
        if not path:
            raise ValueError(f"pass args.config_path, args.config or set {CONFIG_ENV}")
        config = load_config(path)
    # `harmonyspeech serve` checks this itself; `serve deploy` comes through here. Keys are
    # resolved first (the keys file read once), then checked, then deployed.
    config = with_resolved_keys(config)
    ensure_safe_serving(config, serve_http_address())
    return build_application(config)


def build_application(config: EngineConfig) -> Application:
    """One deployment per model instance plus the ingress, bound together."""
    build_catalog(config)  # fail before anything is deployed if a stage is invalid
    config = with_resolved_keys(config)
    models = {
        m.name: serve.deployment(
            ModelServer, name=model_deployment_name(m.name), **deployment_options(m.deployment)
        ).bind(m)
        for m in config.models
    }
    ingress = serve.deployment(
        serve.ingress()(Ingress), name=INGRESS_NAME, **deployment_options(config.server.ingress)
    )
    logger.info(
        "built application: ingress + %s", ", ".join(model_deployment_name(n) for n in models)
    )
    return ingress.bind(config, models)


def deployment_options(options: DeploymentOptions) -> dict[str, Any]:
    """Serve deployment options from ours: keyword arguments of ``serve.deployment`` and, the
    same keys, a deployment entry of a Serve config file."""
    replicas: dict[str, Any]
    if options.autoscaling is None:
        replicas = {"num_replicas": options.replicas}
    else:
        scaling = options.autoscaling
        replicas = {
            "autoscaling_config": {
                "min_replicas": scaling.min_replicas,
                "max_replicas": scaling.max_replicas,
                "target_ongoing_requests": scaling.target_ongoing_requests,
                "upscale_delay_s": scaling.upscale_delay_s,
                "downscale_delay_s": scaling.downscale_delay_s,
            }
        }
    queue: dict[str, Any] = {}
    if options.max_queued_requests is not None:
        queue = {
            "max_queued_requests": options.max_queued_requests,
            "backpressure_config": {"status_code": 503, "retry_after_s": BACKPRESSURE_RETRY_S},
        }
    return {
        **replicas,
        "max_ongoing_requests": options.max_ongoing_requests,
        **queue,
        "ray_actor_options": {"num_cpus": options.num_cpus, "num_gpus": options.num_gpus},
    }
