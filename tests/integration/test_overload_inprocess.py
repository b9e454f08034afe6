"""A full synthesizer queue through the HTTP app over in-process workers (real tiny models, no
Ray): a request that cannot be queued whole fails at once with 503, streamed or not."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from harmonyspeech.config import load_config
from harmonyspeech.pipelines.runtime import LocalEngine
from tests.conftest import TinyWeights, served_config_data

# Eight pieces of about 300 characters (pieces are cut at about 256).
TEXT = " ".join(f"Part {i} {'goes on ' * 35}to its end." for i in range(8))


@pytest.fixture(scope="module")
def engine(tiny_weights: TinyWeights) -> Iterator[LocalEngine]:
    data = served_config_data(tiny_weights)
    for model in data["models"]:
        if model["name"] == "melo-en":
            model["batching"]["max_queue"] = 2
    with LocalEngine(load_config(data)) as local:
        yield local


@pytest.mark.parametrize("stream", [True, False])
async def test_a_request_refused_past_its_first_sentence_is_a_503_before_any_audio(
    http: httpx.AsyncClient, stream: bool
) -> None:
    # Streamed, the answer used to be a 200 that broke off once the stream reached the refused
    # sentence (the first one fits the queue); sent whole, it was a late 503.
    body = {"model": "tts-1", "voice": "alloy", "input": TEXT, "stream": stream}
    async with http.stream("POST", "/v1/audio/speech", json=body) as response:
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) >= 1
        error = json.loads(await response.aread())["error"]
    assert error["code"] == "server_overloaded" and "queue full" in error["message"]
