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


def test_double_slashes_are_tolerated(served, client: httpx.Client) -> None:
    # Clients that join a base URL ending in "/" with "/audio/..." send such paths.
    for path in ("/v1//models", "//v1/models/vad"):
        response = client.get(httpx.URL(served.base_url + path))
        assert response.status_code == 200, path
