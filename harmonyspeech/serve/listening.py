"""Where Serve's HTTP proxies listen, and the API-key rule applied there.

``server.host`` and ``server.port`` say where the app should listen, but Serve listens where
its ``http_options`` say: a Serve config holds its own copy (``build-serve-config`` writes it
from the engine config, and an operator may edit it), and a cluster whose Serve already runs
keeps the options it started with. So the unauthenticated-binding rule is checked against both.
"""

from __future__ import annotations

from typing import NamedTuple

import ray

from harmonyspeech.api.auth import ApiKeyVerifier, ensure_safe_binding
from harmonyspeech.config import EngineConfig


class HttpAddress(NamedTuple):
    host: str
    port: int


def serve_http_address() -> HttpAddress | None:
    """Where the running Serve instance's proxies listen; None when Serve does not run yet
    (``serve run`` builds its application before it starts Serve)."""
    if not ray.is_initialized():
        return None
    # Ray has no public reader of the running instance's HTTP options; the controller client
    # has them from the controller itself.
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return None
    options = client.http_config
    return HttpAddress(str(options.host), int(options.port))


def ensure_safe_serving(config: EngineConfig, listening: HttpAddress | None) -> None:
    """Refuse to serve without API keys beyond loopback, by ``server.host`` or by where Serve
    actually listens (``listening``, when known).

    Raises:
        ConfigError: Either host is not loopback, and no keys or override are configured.
    """
    auth = config.server.auth
    verifier = ApiKeyVerifier.from_config(auth)
    rule = {"allow_insecure": auth.allow_insecure_no_auth, "keys_env": auth.api_keys_env}
    ensure_safe_binding(config.server.host, verifier, **rule)
    if listening is not None:
        where = "http_options.host (where Serve listens)"
        ensure_safe_binding(listening.host, verifier, where=where, **rule)
