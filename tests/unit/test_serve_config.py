"""``harmonyspeech build-serve-config``: the Serve config follows the engine config."""

from __future__ import annotations

import pytest
import yaml

from harmonyspeech.cli import main
from harmonyspeech.config import load_config
from harmonyspeech.errors import ConfigError
from harmonyspeech.serve.app import build_app
from harmonyspeech.serve.serve_config import build_serve_config
from tests.conftest import ROOT


def _data() -> dict:
    return load_config(ROOT / "configs" / "test.yaml").model_dump(mode="json")


def _problems(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        load_config(data)
    return caught.value.problems


def test_deployments_carry_replicas_autoscaling_and_resources() -> None:
    data = _data()
    data["server"]["ray"]["runtime_env"] = {"env_vars": {"HF_HOME": "/models"}}
    melo = next(m for m in data["models"] if m["name"] == "melo-en")
    melo["device"] = "cuda"
    melo["deployment"] = {
        "autoscaling": {"min_replicas": 1, "max_replicas": 6, "target_ongoing_requests": 96},
        "num_cpus": 2,
        "num_gpus": 0.5,
        "max_ongoing_requests": 2048,
    }
    document = build_serve_config(load_config(data))

    app = document["applications"][0]
    deployments = {d["name"]: d for d in app["deployments"]}
    assert set(deployments) == {
        "ingress",
        "model-silero-vad",
        "model-whisper",
        "model-melo-en",
        "model-openvoice",
    }
    assert deployments["model-melo-en"] == {
        "name": "model-melo-en",
        "autoscaling_config": {
            "min_replicas": 1,
            "max_replicas": 6,
            "target_ongoing_requests": 96.0,
            "upscale_delay_s": 30.0,
            "downscale_delay_s": 600.0,
        },
        "max_ongoing_requests": 2048,
        "ray_actor_options": {"num_cpus": 2.0, "num_gpus": 0.5},
    }
    assert deployments["model-whisper"]["num_replicas"] == 1
    assert "max_queued_requests" not in deployments["model-whisper"]
    assert deployments["ingress"]["max_ongoing_requests"] == 512
    assert app["runtime_env"] == {"env_vars": {"HF_HOME": "/models"}}
    assert app["import_path"] == "harmonyspeech.serve.app:build_app"
    assert document["http_options"] == {"host": "127.0.0.1", "port": 8000}


def test_a_bounded_queue_answers_503_with_retry_after() -> None:
    data = _data()
    data["server"]["ingress"]["max_queued_requests"] = 300
    ingress = build_serve_config(load_config(data))["applications"][0]["deployments"][0]
    assert ingress["name"] == "ingress"
    assert ingress["max_queued_requests"] == 300
    assert ingress["backpressure_config"] == {"status_code": 503, "retry_after_s": 1.0}


def test_the_inlined_engine_config_is_the_same_config() -> None:
    config = load_config(ROOT / "configs" / "cluster-gpu.yaml")
    inlined = build_serve_config(config)["applications"][0]["args"]["config"]
    assert load_config(yaml.safe_load(yaml.safe_dump(inlined))) == config


def test_a_config_path_can_be_referenced_instead_of_inlined() -> None:
    config = load_config(ROOT / "configs" / "test.yaml")
    document = build_serve_config(config, config_path="/shared/engine.yaml")
    assert document["applications"][0]["args"] == {"config_path": "/shared/engine.yaml"}


@pytest.mark.parametrize(
    ("engine", "deployment"),
    [
        ("configs/default.yaml", "deployments/serve.yaml"),
        ("configs/cluster-gpu.yaml", "deployments/serve-gpu.yaml"),
    ],
)
def test_committed_serve_configs_are_what_the_command_writes(
    engine: str, deployment: str, tmp_path
) -> None:
    written = tmp_path / "serve.yaml"
    assert main(["build-serve-config", "--config", engine, "-o", str(written)]) == 0
    assert written.read_text() == (ROOT / deployment).read_text()


def test_the_kuberay_example_embeds_the_gpu_serve_config() -> None:
    service = yaml.safe_load((ROOT / "deployments" / "kuberay-rayservice.yaml").read_text())
    embedded = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert embedded == yaml.safe_load((ROOT / "deployments" / "serve-gpu.yaml").read_text())
    workers = service["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert any("nvidia.com/gpu" in w["template"]["spec"]["containers"][0]["resources"]["limits"]
               for w in workers)  # fmt: skip


def test_replicas_and_autoscaling_exclude_each_other() -> None:
    data = _data()
    data["models"][0]["deployment"] = {"replicas": 2, "autoscaling": {"max_replicas": 4}}
    assert _problems(data) == [
        ("models[0].deployment", "set either replicas or autoscaling, not both")
    ]


def test_autoscaling_bounds_are_checked() -> None:
    data = _data()
    data["models"][0]["deployment"] = {"autoscaling": {"min_replicas": 5, "max_replicas": 2}}
    assert _problems(data) == [
        ("models[0].deployment.autoscaling", "min_replicas must be <= max_replicas")
    ]


def test_a_gpu_reservation_needs_a_gpu_device() -> None:
    data = _data()
    data["models"][0]["deployment"] = {"num_gpus": 0.5}
    assert _problems(data)[0][0] == "models[0].deployment.num_gpus"


def test_serve_deploy_refuses_an_open_address_without_keys(monkeypatch) -> None:
    monkeypatch.delenv("HARMONYSPEECH_API_KEYS", raising=False)
    data = _data()
    data["server"]["host"] = "0.0.0.0"
    with pytest.raises(ConfigError, match="without API keys is refused"):
        build_app({"config": data})


def test_local_code_paths_are_refused_with_what_to_use_instead() -> None:
    # `serve deploy` cannot upload them and answered with a pydantic traceback.
    data = _data()
    data["server"]["ray"]["runtime_env"] = {
        "working_dir": "/srv/app",
        "py_modules": ["s3://bucket/extra.zip", "./vendored"],
    }
    with pytest.raises(ConfigError) as info:
        build_serve_config(load_config(data))
    assert [where for where, _ in info.value.problems] == [
        "server.ray.runtime_env.working_dir",
        "server.ray.runtime_env.py_modules",
    ]
    assert "./vendored is a local path" in info.value.problems[1][1]
    data["server"]["ray"]["runtime_env"] = {"working_dir": "s3://bucket/app.zip"}
    app = build_serve_config(load_config(data))["applications"][0]
    assert app["runtime_env"] == {"working_dir": "s3://bucket/app.zip"}
