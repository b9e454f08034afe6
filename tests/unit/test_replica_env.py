"""The environment a model process gives itself before its OpenMP runtime and oneDNN load."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harmonyspeech.models.process_env import MODEL_ENV_DEFAULTS, apply_model_env_defaults


def test_defaults_fill_only_what_the_environment_lacks() -> None:
    bare: dict[str, str] = {"HOME": "/root"}
    assert apply_model_env_defaults(bare) == {
        "GOMP_SPINCOUNT": "1000",
        "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "8192",
    }
    assert bare == {"HOME": "/root", **MODEL_ENV_DEFAULTS}
    chosen = {"GOMP_SPINCOUNT": "0"}  # e.g. from server.ray.runtime_env.env_vars
    assert apply_model_env_defaults(chosen) == {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "8192"}
    assert chosen == {"GOMP_SPINCOUNT": "0", "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "8192"}


def test_a_default_never_overrides_the_variable_it_would_silence() -> None:
    # GNU OpenMP ignores OMP_WAIT_POLICY once GOMP_SPINCOUNT is set; oneDNN prefers ONEDNN_*
    # to the DNNL_* names: a default there would undo what the operator chose.
    chosen = {"OMP_WAIT_POLICY": "PASSIVE", "DNNL_PRIMITIVE_CACHE_CAPACITY": "2048"}
    assert apply_model_env_defaults(chosen) == {}
    assert set(chosen) == {"OMP_WAIT_POLICY", "DNNL_PRIMITIVE_CACHE_CAPACITY"}


@pytest.mark.parametrize(
    "module",
    ["harmonyspeech.serve.deployments", "harmonyspeech.batch.command", "harmonyspeech.cli"],
    ids=["replica", "batch", "cli"],
)
def test_the_model_processes_load_no_openmp_runtime_on_import(module: str) -> None:
    """ModelServer, and the CLI's batch command before it runs models in its own process,
    apply the defaults first thing; they only work if importing them (what a Serve replica or
    the command line does first) leaves torch and CTranslate2 unloaded."""
    probe = (
        f"import sys, {module}; "
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
    with caplog.at_level(logging.WARNING, logger="harmonyspeech.models.process_env"):
        apply_model_env_defaults({})
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


def test_an_in_process_engine_applies_the_defaults_before_its_models_load() -> None:
    """LocalEngine (what a batch job runs its models on without a Serve app) gives its process
    the defaults when it is built, while torch is not loaded yet: a fresh process, as the CLI's
    ``batch run`` is."""
    config = Path(__file__).resolve().parents[2] / "configs" / "test.yaml"
    probe = f"""
import os, sys
from harmonyspeech.pipelines.runtime import LocalEngine
from harmonyspeech.pipelines.spec import load_checked_config
LocalEngine(load_checked_config({str(config)!r}))
print(sorted(m for m in ('torch', 'ctranslate2') if m in sys.modules))
print(os.environ.get("GOMP_SPINCOUNT"), os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY"))
"""
    environ = {k: v for k, v in os.environ.items() if k not in MODEL_ENV_DEFAULTS}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=environ,
    )
    assert result.stdout.splitlines() == ["[]", "1000 8192"]
