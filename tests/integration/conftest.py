"""One real local Ray Serve app, serving configs/test.yaml, for the whole test session."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
def toy_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random toy Whisper in CTranslate2 format, built offline."""
    from harmonyspeech.models.whisper_fixtures import build_whisper_model

    return build_whisper_model(tmp_path_factory.mktemp("whisper") / "toy", size="toy")


def served_config(port: int, whisper_dir: Path) -> EngineConfig:
    """configs/test.yaml on ``port`` with the toy Whisper's weights."""
    data = load_config(ROOT / "configs" / "test.yaml").model_dump()
    data["server"]["port"] = port
    for model in data["models"]:
        if model["family"] == "faster-whisper":
            model["weights"] = {"path": str(whisper_dir)}
    return load_config(data)


@pytest.fixture(scope="session")
def served(toy_whisper: Path) -> Iterator[ServedApp]:
    import ray
    from ray import serve

    from harmonyspeech.serve.app import build_application

    config = served_config(free_port(), toy_whisper)
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


@pytest.fixture
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
