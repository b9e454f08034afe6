"""Ray process settings that must be fixed before ``ray`` is imported (this module never
imports it)."""

from __future__ import annotations

import os
from pathlib import Path


def prepare_ray_auth(address: str | None) -> None:
    """Use the cluster's auth token when joining an existing cluster.

    Ray 2.60 turns token authentication on for new clusters and writes ``~/.ray/auth_token``;
    an embedded cluster started by ``ray.init()`` handles that itself. A client joining a cluster
    started with ``ray start`` is refused unless it runs in token mode, and Ray reads the mode
    once, at import, so this must run before ``import ray``. An explicit ``RAY_AUTH_MODE`` wins.
    """
    if address is None or "RAY_AUTH_MODE" in os.environ:
        return
    if (Path.home() / ".ray" / "auth_token").exists() or "RAY_AUTH_TOKEN" in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"
