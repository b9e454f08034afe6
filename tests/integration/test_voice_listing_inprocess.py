"""Built-in voices of two speech pipelines whose synthesizers map one voice name to different
speakers (real tiny models, no Ray): each way of speaking it is listed with its own pipelines."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import httpx
import pytest

from harmonyspeech.config import load_config
from harmonyspeech.pipelines.runtime import LocalEngine
from tests.conftest import TinyWeights, served_config_data


@pytest.fixture(scope="module")
def engine(tiny_weights: TinyWeights) -> Iterator[LocalEngine]:
    data = served_config_data(tiny_weights)
    melo = next(m for m in data["models"] if m["name"] == "melo-en")
    other = copy.deepcopy(melo)
    other["name"] = "melo-br"
    other["options"]["voices"] = {"alloy": "EN-BR", "echo": "EN-BR"}
    data["models"].append(other)
    data["pipelines"].append(
        {"name": "tts-br", "stages": [{"kind": "synthesize", "model": "melo-br"}]}
    )
    with LocalEngine(load_config(data)) as local:
        yield local


def _builtin(voices: list[dict], voice_id: str) -> list[tuple[str, list[str]]]:
    return [(v["speaker"], v["models"]) for v in voices if v["id"] == voice_id]


async def test_a_name_spoken_two_ways_is_listed_once_per_way(http: httpx.AsyncClient) -> None:
    voices = (await http.get("/v1/audio/voices")).json()["voices"]
    speech = ["tts", "tts-validated"]
    # Used to be one entry, the first pipeline's speaker, listing tts-br as well.
    assert _builtin(voices, "alloy") == [("EN-US", speech), ("EN-BR", ["tts-br"])]
    # A speaker name means the same speaker in both: one entry.
    assert _builtin(voices, "EN-BR") == [("EN-BR", [*speech, "tts-br"])]

    narrowed = (await http.get("/v1/audio/voices", params={"model": "tts-br"})).json()["voices"]
    assert _builtin(narrowed, "alloy") == [("EN-BR", ["tts-br"])]


async def test_one_voice_is_shown_as_the_pipeline_asked_for_speaks_it(
    http: httpx.AsyncClient,
) -> None:
    first = (await http.get("/v1/audio/voices/alloy")).json()
    assert (first["speaker"], first["models"]) == ("EN-US", ["tts", "tts-validated"])
    asked = (await http.get("/v1/audio/voices/alloy", params={"model": "tts-br"})).json()
    assert (asked["speaker"], asked["models"]) == ("EN-BR", ["tts-br"])
    # A name the pipeline asked for does not have is no voice of it.
    missing = await http.get("/v1/audio/voices/fable", params={"model": "tts-br"})
    assert missing.status_code == 404
