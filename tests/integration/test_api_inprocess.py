"""The HTTP app over in-process workers (real Silero VAD, no Ray): auth and request limits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from harmonyspeech.api.auth import ApiKeyVerifier, hash_key
from harmonyspeech.config import EngineConfig, load_config
from harmonyspeech.pipelines.runtime import LocalEngine
from tests.conftest import ROOT, TinyWeights, served_config_data
from tests.unit.vad_clips import clip_bytes

KEY = "sk-test-0123456789"
PAGE = "https://app.example.com"


@pytest.fixture(scope="module")
def engine(tiny_weights: TinyWeights) -> Iterator[LocalEngine]:
    data = served_config_data(tiny_weights)
    data["server"]["auth"]["api_key_hashes"] = [hash_key(KEY)]
    data["server"]["limits"]["max_upload_bytes"] = 400_000
    data["server"]["cors"] = {"allow_origins": [PAGE]}
    with LocalEngine(load_config(data)) as local:
        yield local


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_v1_requires_a_valid_key(http: httpx.AsyncClient) -> None:
    missing = await http.get("/v1/models")
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = await http.get("/v1/models", headers=bearer("sk-wrong"))
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "invalid API key"
    assert (await http.get("/v1/models", headers=bearer(KEY))).status_code == 200


def preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }


async def test_an_allowed_page_passes_the_preflight_and_reads_every_answer(
    http: httpx.AsyncClient,
) -> None:
    asked = await http.options("/v1/audio/transcriptions", headers=preflight(PAGE))
    assert asked.status_code == 200
    assert asked.headers["access-control-allow-origin"] == PAGE
    assert "POST" in asked.headers["access-control-allow-methods"]
    assert asked.headers["access-control-allow-headers"] == "authorization,content-type"
    assert asked.headers["access-control-max-age"] == "600"
    # A page can read why a call failed, not only its successes; it still needs a key.
    refused = await http.get("/v1/models", headers={"Origin": PAGE})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == PAGE
    served = await http.get("/v1/models", headers={"Origin": PAGE, **bearer(KEY)})
    assert served.status_code == 200
    assert served.headers["access-control-allow-origin"] == PAGE
    assert served.headers["access-control-expose-headers"] == "*"


async def test_other_pages_are_not_allowed(http: httpx.AsyncClient) -> None:
    other = "https://elsewhere.example"
    asked = await http.options("/v1/audio/transcriptions", headers=preflight(other))
    assert asked.status_code == 400
    assert "access-control-allow-origin" not in asked.headers
    response = await http.get("/v1/models", headers={"Origin": other, **bearer(KEY)})
    assert "access-control-allow-origin" not in response.headers


async def test_health_endpoints_stay_open(http: httpx.AsyncClient) -> None:
    for path in ("/health", "/ready", "/"):
        assert (await http.get(path)).status_code == 200


async def test_vad_with_key(http: httpx.AsyncClient) -> None:
    files = {"file": ("c.flac", clip_bytes("short"))}
    response = await http.post("/v1/audio/vad", files=files, headers=bearer(KEY))
    assert response.status_code == 200
    assert response.json()["segments"]


async def test_chunked_body_over_the_limit_is_413(http: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"\0" * 50_000

    response = await http.post(
        "/v1/audio/vad",
        content=chunks(),
        headers={**bearer(KEY), "content-type": "multipart/form-data; boundary=x"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_keys_from_the_environment_are_hashed() -> None:
    config: EngineConfig = load_config(ROOT / "configs" / "test.yaml")
    verifier = ApiKeyVerifier.from_config(
        config.server.auth, {"HARMONYSPEECH_API_KEYS": " a-key , other "}
    )
    verifier.verify("Bearer a-key")
    verifier.verify("bearer other")
    assert verifier.enabled


async def test_a_trailing_slash_reaches_the_route_without_a_redirect(
    http: httpx.AsyncClient,
) -> None:
    listed = await http.get("/v1/models/", headers=bearer(KEY))
    assert listed.status_code == 200 and listed.json()["object"] == "list"
    files = {"file": ("c.flac", clip_bytes("short"))}
    detected = await http.post("/v1/audio/vad/", files=files, headers=bearer(KEY))
    assert detected.status_code == 200 and detected.json()["segments"]


async def test_an_unknown_model_is_model_not_found_as_on_every_route(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/v1/models/nope", headers=bearer(KEY))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
