"""Discovery and health endpoints of the served app."""

from __future__ import annotations

import httpx


def test_health_and_ready(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["models"]["silero-vad"]["state"] == "ready"


def test_root_describes_the_server(client: httpx.Client) -> None:
    body = client.get("/").json()
    assert body["name"] == "harmonyspeech"
    assert "/v1/audio/vad" in body["endpoints"]


def test_the_openai_base_url_answers_as_the_root(client: httpx.Client) -> None:
    # livekit's prewarm probes GET {base_url}/, and OpenAI base URLs end in /v1.
    for path in ("/v1", "/v1/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.json() == client.get("/").json()


def test_head_answers_every_get_route_without_a_body(client: httpx.Client) -> None:
    for path in ("/health", "/", "/v1/models", "/v1/audio/voices"):
        head, get = client.head(path), client.get(path)
        assert head.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-type"] == get.headers["content-type"]
        assert head.headers["content-length"] == get.headers["content-length"], path
    missing = client.head("/v1/models/tts-9")
    assert missing.status_code == 404 and missing.content == b""


def test_models_list_has_openai_shape(client: httpx.Client) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    cards = {card["id"]: card for card in body["data"]}
    assert all(card["object"] == "model" and card["owned_by"] for card in cards.values())
    assert cards["vad"]["type"] == "pipeline"
    assert cards["vad"]["details"]["stages"] == [
        {"kind": "vad", "model": "silero-vad", "state": "ready"}
    ]
    assert cards["silero-vad"]["details"] == {"alias_of": "vad"}
    instance = cards["instance:silero-vad"]["details"]
    assert instance["family"] == "silero-vad" and instance["state"] == "ready"


def test_models_are_retrievable_one_by_one(client: httpx.Client) -> None:
    assert client.get("/v1/models/vad").json()["id"] == "vad"
    missing = client.get("/v1/models/tts-9")
    assert missing.status_code == 404
    assert missing.json()["error"]["param"] == "model"


def test_unknown_routes_and_methods_use_the_envelope(client: httpx.Client) -> None:
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = client.get("/v1/audio/vad")
    assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "invalid_request_error"


def test_a_wrong_method_is_told_the_methods_the_route_takes(client: httpx.Client) -> None:
    # RFC 9110: a 405 must carry Allow; voices has one route per method, so it lists them all.
    expected = {
        ("GET", "/v1/audio/vad"): "POST",
        ("HEAD", "/v1/audio/vad"): "POST",
        ("DELETE", "/v1/models"): "GET, HEAD",
        ("DELETE", "/v1/audio/voices"): "GET, HEAD, POST",
        ("PUT", "/v1/audio/voices/voice_0123456789abcdef"): "DELETE, GET, HEAD",
    }
    for (method, path), allow in expected.items():
        response = client.request(method, path)
        assert response.status_code == 405, (method, path)
        assert response.headers["allow"] == allow, (method, path)
    assert client.delete("/v1/models").json()["error"]["code"] == "method_not_allowed"


def test_no_page_is_allowed_cross_origin_by_default(client: httpx.Client) -> None:
    headers = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
    asked = client.options("/v1/audio/speech", headers=headers)
    assert asked.status_code == 405
    assert "access-control-allow-origin" not in asked.headers
    listed = client.get("/v1/models", headers={"Origin": "https://app.example.com"})
    assert listed.status_code == 200 and "access-control-allow-origin" not in listed.headers


def test_double_slashes_are_tolerated(served, client: httpx.Client) -> None:
    # Clients that join a base URL ending in "/" with "/audio/..." send such paths.
    for path in ("/v1//models", "//v1/models/vad"):
        response = client.get(httpx.URL(served.base_url + path))
        assert response.status_code == 200, path
