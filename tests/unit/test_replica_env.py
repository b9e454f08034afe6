"""The environment a model replica gives itself before its OpenMP runtime loads."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from harmonyspeech.serve.deployments import MODEL_REPLICA_ENV_DEFAULTS, apply_replica_env_defaults


def test_defaults_fill_only_what_the_environment_lacks() -> None:
    bare: dict[str, str] = {"HOME": "/root"}
    assert apply_replica_env_defaults(bare) == {"GOMP_SPINCOUNT": "1000"}
    assert bare == {"HOME": "/root", **MODEL_REPLICA_ENV_DEFAULTS}
    chosen = {"GOMP_SPINCOUNT": "0"}  # e.g. from server.ray.runtime_env.env_vars
    assert apply_replica_env_defaults(chosen) == {}
    assert chosen == {"GOMP_SPINCOUNT": "0"}


def test_the_replica_module_loads_no_openmp_runtime() -> None:
    """ModelServer applies the defaults first thing; they only work if importing it (what a
    Serve replica does before constructing it) leaves torch and CTranslate2 unloaded."""
    probe = (
        "import sys, harmonyspeech.serve.deployments; "
        "print(sorted(m for m in ('torch', 'ctranslate2') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]"


def test_applying_after_torch_loaded_says_it_has_no_effect(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "torch", sys.modules.get("torch", object()))
    with caplog.at_level(logging.WARNING, logger="harmonyspeech.serve.deployments"):
        apply_replica_env_defaults({})
    assert "has no effect" in caplog.text


def test_a_replica_logs_this_package_where_serve_logs_at_its_level() -> None:
    # Serve sets up only its own logger in a replica: info lines such as "model loaded" went
    # nowhere. A fresh process, as a replica is, with Serve's logger set up as Serve does.
    probe = """
import logging, sys
from harmonyspeech.serve.deployments import log_through_serve
serve = logging.getLogger("ray.serve")
serve.propagate = False
serve.setLevel(logging.INFO)
serve.handlers.clear()
handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(logging.Formatter("serve-format %(name)s %(message)s"))
serve.addHandler(handler)
log_through_serve()
logging.getLogger("harmonyspeech.engine.worker").info("model loaded")
logging.getLogger("harmonyspeech.api").debug("below the level")
"""
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.splitlines() == ["serve-format harmonyspeech.engine.worker model loaded"]
