"""Shared fixtures. Tests are marked by folder (unit / integration / e2e).

No test touches the network: hub access is switched off for the whole session (before any
Hugging Face library is imported, as they read these variables once), and every served config
points at tiny random models built offline in the official formats.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from harmonyspeech.config import EngineConfig, load_config
from tests.helpers import RedisServer

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, parts[0]))


@dataclass(frozen=True)
class TinyWeights:
    """Random models in the official on-disk formats, built offline once per session."""

    whisper: Path
    melo: Path
    bert: Path
    openvoice: Path
    voices: Path
    """An empty directory for the cloned-voice registry."""


@pytest.fixture(scope="session")
def toy_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random toy Whisper in CTranslate2 format."""
    from harmonyspeech.models.whisper_fixtures import build_whisper_model

    return build_whisper_model(tmp_path_factory.mktemp("whisper") / "toy", size="toy")


@pytest.fixture(scope="session")
def tiny_weights(toy_whisper: Path, tmp_path_factory: pytest.TempPathFactory) -> TinyWeights:
    from harmonyspeech.models.bert_fixtures import build_tiny_bert_dir
    from harmonyspeech.models.melo import build_melo_checkpoint
    from harmonyspeech.models.openvoice import build_converter_checkpoint

    root = tmp_path_factory.mktemp("weights")
    return TinyWeights(
        whisper=toy_whisper,
        melo=build_melo_checkpoint(root / "melo", size="tiny"),
        # MeloTTS takes 768-channel BERT features, so the tiny BERT keeps that width.
        bert=build_tiny_bert_dir(root / "bert", hidden_size=768, num_layers=3),
        openvoice=build_converter_checkpoint(root / "openvoice", size="tiny"),
        voices=tmp_path_factory.mktemp("voices"),
    )


def served_config_data(weights: TinyWeights, **server: object) -> dict:
    """configs/test.yaml as a mapping, with the tiny weights and ``server`` overrides."""
    data = load_config(ROOT / "configs" / "test.yaml").model_dump()
    data["server"]["voices"] = {"path": str(weights.voices)}
    data["server"].update(server)
    for model in data["models"]:
        if model["family"] == "faster-whisper":
            model["weights"] = {"path": str(weights.whisper)}
        if model["family"] == "openvoice":
            model["weights"] = {"path": str(weights.openvoice)}
        if model["family"] == "melotts":
            model["weights"] = {"path": str(weights.melo)}
            model["options"]["bert"] = {"source": str(weights.bert)}
    return data


def served_config(weights: TinyWeights, **server: object) -> EngineConfig:
    return load_config(served_config_data(weights, **server))


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server for the session (tests namespace their keys); skipped without one
    unless HARMONYSPEECH_REQUIRE_REDIS=1."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server
