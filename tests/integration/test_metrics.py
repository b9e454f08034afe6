"""Metrics of the real Ray Serve app reach Ray's metrics agent: model metrics tagged with the
model's deployment and replica, request metrics with the ingress's. Ray exports what replicas
record every few seconds, so the test polls (bounded)."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.helpers import scrape
from tests.integration.conftest import ServedApp
from tests.unit.vad_clips import clip_bytes

POLL_S = 40.0
TEXT = "Metrics are exported through the metrics agent of the Ray node."


def _matches(labels: dict[str, str], wanted: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in wanted.items())


def _sensible(name: str, value: float) -> bool:
    # Counts and totals grew; the queue-depth gauge is back to 0 once requests are done.
    return value >= 0 if name.endswith("queue_depth") else value > 0


def test_model_and_request_metrics_reach_rays_metrics_agent(
    served: ServedApp, openai_client: openai.OpenAI, client: httpx.Client
) -> None:
    openai_client.audio.speech.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="pcm", extra_body={"seed": 5}
    )
    vad = client.post("/v1/audio/vad", files={"file": ("a.flac", clip_bytes("short"))})
    assert vad.status_code == 200
    openai_client.audio.transcriptions.create(
        model="whisper-1", file=("b.flac", clip_bytes("two_phrases"))
    )
    with pytest.raises(openai.NotFoundError):
        openai_client.audio.speech.create(model="no-such-model", voice="alloy", input=TEXT)

    app = {"application": "harmonyspeech"}
    ingress = {**app, "deployment": "ingress"}
    wanted: dict[str, dict[str, str]] = {
        "ray_harmonyspeech_queue_depth": {**app, "deployment": "model-melo-en", "model": "melo-en"},
        "ray_harmonyspeech_batch_size_count": {
            **app,
            "deployment": "model-melo-en",
            "model": "melo-en",
        },
        "ray_harmonyspeech_batch_padding_efficiency_count": {
            **app,
            "deployment": "model-silero-vad",
            "model": "silero-vad",
        },
        "ray_harmonyspeech_batch_latency_seconds_count": {
            **app,
            "deployment": "model-whisper",
            "model": "whisper",
        },
        "ray_harmonyspeech_stage_latency_seconds_count": {
            **ingress,
            "pipeline": "tts",
            "stage": "synthesize",
        },
        "ray_harmonyspeech_time_to_first_audio_seconds_count": {**ingress, "pipeline": "tts"},
        "ray_harmonyspeech_audio_output_seconds_total": {**ingress, "pipeline": "tts"},
        "ray_harmonyspeech_audio_input_seconds_total": {**ingress, "pipeline": "whisper"},
        "ray_harmonyspeech_real_time_factor_count": {
            **ingress,
            "pipeline": "tts",
            "audio": "output",
        },
        "ray_harmonyspeech_errors_total": {**ingress, "code": "model_not_found", "status": "404"},
        "ray_harmonyspeech_requests_total": {
            **ingress,
            "endpoint": "/v1/audio/vad",
            "method": "POST",
            "status": "200",
        },
    }
    url = f"http://127.0.0.1:{served.metrics_port}/metrics"
    deadline = time.monotonic() + POLL_S
    missing = dict(wanted)
    samples: list[tuple[str, dict[str, str], float]] = []
    while missing and time.monotonic() < deadline:
        samples = scrape(url)
        missing = {
            name: labels
            for name, labels in wanted.items()
            if not any(
                n == name and _matches(ls, labels) and _sensible(n, v) for n, ls, v in samples
            )
        }
        if missing:
            time.sleep(1.0)
    seen = sorted({n for n, _, _ in samples if n.startswith("ray_harmonyspeech_")})
    assert not missing, f"missing after {POLL_S:.0f} s: {missing}; exported: {seen}"
    # Ray Serve's own metrics come from the same endpoint.
    assert any(n.startswith("ray_serve_") for n, _, _ in samples)
    # Replica tags tell the replicas of a deployment apart.
    depth = [ls for n, ls, _ in samples if n == "ray_harmonyspeech_queue_depth"]
    assert all(ls.get("replica") for ls in depth)


def test_the_ingress_metrics_route_points_at_ray(client: httpx.Client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert "scrape the metrics export port of every Ray node" in response.text
    samples = [line for line in response.text.splitlines() if not line.startswith("#")]
    assert not [line for line in samples if line.startswith("harmonyspeech_")]
