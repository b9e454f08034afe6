"""One real local Ray Serve app, serving configs/test.yaml, for the whole test session."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from harmonyspeech.config import EngineConfig, load_config
from tests.conftest import ROOT
from tests.helpers import answers, free_port, wait_until


@dataclass(frozen=True)
class ServedApp:
    base_url: str
    config: EngineConfig


@pytest.fixture(scope="session")
def served() -> Iterator[ServedApp]:
    import ray
    from ray import serve

    from harmonyspeech.serve.app import build_application

    data = load_config(ROOT / "configs" / "test.yaml").model_dump()
    data["server"]["port"] = free_port()
    config = load_config(data)
    base_url = f"http://127.0.0.1:{config.server.port}"
    ray.init(num_cpus=4, include_dashboard=False, namespace="harmonyspeech-tests")
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": config.server.port})
        serve.run(build_application(config), name="harmonyspeech", route_prefix="/")
        wait_until(answers(f"{base_url}/ready"), timeout=120, what="the app to be ready")
        yield ServedApp(base_url, config)
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture
def client(served: ServedApp) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.base_url, timeout=60) as http:
        yield http
