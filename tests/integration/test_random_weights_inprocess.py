"""Answers of models on random demo weights say so (DESIGN.md decision 7), on every endpoint
that runs a pipeline, naming the models the request used (real tiny models, no Ray)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from harmonyspeech.api.demo import RANDOM_WEIGHTS_HEADER
from harmonyspeech.config import load_config
from harmonyspeech.pipelines.runtime import LocalEngine
from tests.conftest import TinyWeights, served_config_data
from tests.unit.vad_clips import clip_bytes


@pytest.fixture(scope="module")
def engine(
    tiny_weights: TinyWeights, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalEngine]:
    # Whisper and the converter have no weights here, and may start on random ones.
    cache = tmp_path_factory.mktemp("random-weights")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_HOME", str(cache / "hf"))
        patch.setattr("harmonyspeech.models.faster_whisper.RANDOM_CACHE", cache)
        data = served_config_data(tiny_weights)
        data["server"]["voices"] = {"path": str(cache / "voices")}
        for model in data["models"]:
            if model["family"] in ("faster-whisper", "openvoice"):
                model["weights"] = {"allow_random": True}
        with LocalEngine(load_config(data)) as local:
            yield local


def upload(name: str = "two_phrases") -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (f"{name}.flac", clip_bytes(name), "audio/flac"))]


async def test_transcriptions_and_translations_name_a_random_whisper(
    http: httpx.AsyncClient,
) -> None:
    # They used to carry no mark at all: only speech did.
    for path, data in (
        ("/v1/audio/transcriptions", {"model": "whisper-1"}),
        ("/v1/audio/transcriptions", {"model": "whisper-1", "response_format": "srt"}),
        ("/v1/audio/transcriptions", {"model": "gpt-4o-transcribe", "stream": "true"}),
        ("/v1/audio/translations", {"model": "whisper-1"}),
    ):
        response = await http.post(path, files=upload(), data=data)
        assert response.status_code == 200, response.text
        assert response.headers[RANDOM_WEIGHTS_HEADER] == "whisper"


async def test_cloning_names_a_random_converter_and_speech_names_what_it_used(
    http: httpx.AsyncClient,
) -> None:
    files = upload("two_phrases") + upload("distractors")
    voice = await http.post("/v1/audio/voices", files=files, data={"name": "Ada"})
    assert voice.status_code == 200, voice.text
    assert voice.headers[RANDOM_WEIGHTS_HEADER] == "openvoice"
    embedding = await http.post("/v1/audio/embeddings", files=files)
    assert embedding.headers[RANDOM_WEIGHTS_HEADER] == "openvoice"

    body = {"model": "tts-1", "input": "Hi there.", "response_format": "wav"}
    cloned = await http.post("/v1/audio/speech", json={**body, "voice": voice.json()["id"]})
    assert cloned.headers[RANDOM_WEIGHTS_HEADER] == "openvoice"
    # MeloTTS has its (tiny) checkpoint; a built-in voice skips the converter: no mark.
    builtin = await http.post("/v1/audio/speech", json={**body, "voice": "alloy"})
    assert builtin.status_code == 200 and RANDOM_WEIGHTS_HEADER not in builtin.headers
