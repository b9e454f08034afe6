"""One real local Ray Serve app, serving configs/test.yaml, for the whole test session; and an
HTTP client of the app in-process, over a module's own ``engine``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest

from harmonyspeech.config import EngineConfig
from harmonyspeech.pipelines.runtime import LocalEngine
from tests.conftest import TinyWeights, served_config
from tests.helpers import answers, asgi_client, free_port, wait_until


@dataclass(frozen=True)
class ServedApp:
    base_url: str
    config: EngineConfig
    metrics_port: int
    """Port of Ray's metrics agent (``ray_*`` metrics of every replica at ``/metrics``)."""


@pytest.fixture(scope="session")
def served(tiny_weights: TinyWeights) -> Iterator[ServedApp]:
    import ray
    from ray import serve

    from harmonyspeech.serve.app import build_application

    config = served_config(tiny_weights, port=free_port())
    base_url = f"http://127.0.0.1:{config.server.port}"
    metrics_port = free_port()
    ray.init(
        address="local",
        num_cpus=4,
        include_dashboard=False,
        namespace="harmonyspeech-tests",
        _metrics_export_port=metrics_port,
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": config.server.port})
        quiet = {"log_level": "WARNING", "enable_access_log": False}
        serve.run(
            build_application(config),
            name="harmonyspeech",
            route_prefix="/",
            logging_config=quiet,
        )
        wait_until(answers(f"{base_url}/ready"), timeout=120, what="the app to be ready")
        yield ServedApp(base_url, config, metrics_port)
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture
def client(served: ServedApp) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.base_url, timeout=60) as http:
        yield http


@pytest.fixture(scope="session")
def openai_client(served: ServedApp):
    from openai import OpenAI

    with OpenAI(base_url=f"{served.base_url}/v1", api_key="unused", max_retries=0) as sdk:
        yield sdk


@pytest.fixture
async def async_openai_client(served: ServedApp):
    from openai import AsyncOpenAI

    async with AsyncOpenAI(
        base_url=f"{served.base_url}/v1", api_key="unused", max_retries=0
    ) as sdk:
        yield sdk


@pytest.fixture
async def http(engine: LocalEngine) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app over the requesting module's ``engine`` fixture (in-process, no Ray)."""
    async with asgi_client(engine.runtime) as client:
        yield client
