"""A Ray Serve config file (for ``serve deploy`` or a KubeRay ``RayService``) from an engine config.

The engine config stays the one source of truth: replicas or autoscaling, CPU and GPU fractions,
``max_ongoing_requests`` and the runtime environment all come from it. The Serve config repeats
them per deployment so that cluster operators see (and may tune) them where Serve looks.
"""

from __future__ import annotations

from typing import Any

from harmonyspeech.config import EngineConfig
from harmonyspeech.errors import ConfigError
from harmonyspeech.serve.app import (
    APP_NAME,
    INGRESS_NAME,
    deployment_options,
    model_deployment_name,
)

IMPORT_PATH = "harmonyspeech.serve.app:build_app"


def build_serve_config(
    config: EngineConfig,
    *,
    config_path: str | None = None,
    app_name: str = APP_NAME,
    proxy_location: str = "EveryNode",
) -> dict[str, Any]:
    """The Serve config document.

    Args:
        config: The engine config.
        config_path: Reference this path (resolved on the cluster) instead of inlining the
            engine config into the application's ``args``.
        app_name: Serve application name; batch jobs attach to the app of this name.
        proxy_location: Where Serve runs HTTP proxies (``EveryNode``, ``HeadOnly``).

    Raises:
        ConfigError: The runtime environment names local code paths, which Serve cannot ship.
    """
    args: dict[str, Any]
    if config_path is not None:
        args = {"config_path": config_path}
    else:
        args = {"config": config.model_dump(mode="json", exclude_unset=True)}
    application: dict[str, Any] = {
        "name": app_name,
        "route_prefix": "/",
        "import_path": IMPORT_PATH,
        "args": args,
        "deployments": _deployments(config),
    }
    if config.server.ray.runtime_env:
        application["runtime_env"] = _remote_only(dict(config.server.ray.runtime_env))
    return {
        "proxy_location": proxy_location,
        "http_options": {"host": config.server.host, "port": config.server.port},
        "applications": [application],
    }


def _deployments(config: EngineConfig) -> list[dict[str, Any]]:
    entries = [{"name": INGRESS_NAME, **deployment_options(config.server.ingress)}]
    for model in config.models:
        entries.append(
            {"name": model_deployment_name(model.name), **deployment_options(model.deployment)}
        )
    return entries


def _remote_only(runtime_env: dict[str, Any]) -> dict[str, Any]:
    """``runtime_env`` for a Serve config, whose code must live at remote URIs.

    ``harmonyspeech serve`` uploads a local ``working_dir`` or ``py_modules`` path itself, but
    ``serve deploy`` cannot, and refuses the file with a schema traceback.

    Raises:
        ConfigError: A local path in ``working_dir`` or ``py_modules``.
    """
    problems = []
    for key in ("working_dir", "py_modules"):
        value = runtime_env.get(key)
        paths = value if isinstance(value, list) else [value] if value is not None else []
        local = [str(path) for path in paths if "://" not in str(path)]
        if local:
            problems.append(
                (
                    f"server.ray.runtime_env.{key}",
                    f"{', '.join(local)} is a local path; a Serve config needs a remote URI "
                    "(s3://, gs://, https://.../code.zip), or install the code on every node",
                )
            )
    if problems:
        raise ConfigError(problems)
    return runtime_env
