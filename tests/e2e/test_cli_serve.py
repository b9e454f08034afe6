"""``harmonyspeech serve`` as a user runs it: start, answer, stop on SIGTERM, start again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from tests.conftest import ROOT, TinyWeights, served_config_data, write_config
from tests.helpers import answers, free_port, scrape, wait_until
from tests.unit.vad_clips import clip_bytes


@dataclass(frozen=True)
class Served:
    base: str
    process: subprocess.Popen
    log: Path


@contextmanager
def serving(config: Path, port: int, log: Path) -> Iterator[Served]:
    """The CLI in a subprocess; on exit, SIGTERM (unless the test sent it) and a check that it
    stopped cleanly."""
    out = log.open("w")
    command = ["harmonyspeech", "serve", "--config", str(config), "--port", str(port)]
    process = subprocess.Popen(
        [sys.executable, "-m", *command],
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(answers(f"{base}/ready"), timeout=120, what="harmonyspeech serve")
        yield Served(base, process, log)
    finally:
        if process.poll() is None and "shutting down" not in log.read_text():
            process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        out.close()
    assert code == 0
    text = log.read_text()
    assert f"listening on {base}" in text and "stopped" in text


def test_serve_command_serves_stops_and_keeps_cloned_voices(
    tmp_path: Path, tiny_weights: TinyWeights
) -> None:
    port, metrics_port = free_port(), free_port()
    data = served_config_data(
        tiny_weights, ray={"metrics_export_port": metrics_port}, shutdown_grace_s=90
    )
    config = write_config(tmp_path / "engine.yaml", data)
    with serving(config, port, tmp_path / "first.log") as served:
        base = served.base
        files = {"file": ("c.flac", clip_bytes("short"))}
        response = httpx.post(f"{base}/v1/audio/vad", files=files, timeout=60)
        assert response.status_code == 200 and response.json()["segments"]
        # The embedded Ray's metrics agent listens on the configured port.
        metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        wait_until(
            lambda: any(
                name == "ray_harmonyspeech_batch_size_count" for name, _, _ in scrape(metrics)
            ),
            timeout=40,
            what="model metrics on the configured metrics port",
            every=1.0,
        )
        reference = [("file", ("ref.flac", clip_bytes("two_phrases")))]
        created = httpx.post(
            f"{base}/v1/audio/voices", files=reference, data={"name": "Kept"}, timeout=60
        )
        assert created.status_code == 200, created.text
        voice = created.json()

    with serving(config, port, tmp_path / "second.log") as served:
        base = served.base
        again = httpx.get(f"{base}/v1/audio/voices/{voice['id']}", timeout=30)
        assert again.status_code == 200 and again.json() == voice
        body = {"model": "tts-1", "voice": voice["id"], "input": "Still here.", "stream": False}
        speech = httpx.post(f"{base}/v1/audio/speech", json=body, timeout=60)
        assert speech.status_code == 200 and len(speech.content) > 1000
        assert_a_signal_lets_requests_in_flight_finish(served, voice["id"])
    assert "every request in flight was answered" in (tmp_path / "second.log").read_text()


def assert_a_signal_lets_requests_in_flight_finish(served: Served, voice: str) -> None:
    """SIGTERM during a cloned-voice stream: the stream still ends complete (its later
    sentences still get converted), and a request that arrives after the signal is refused."""
    # Five pieces: the first is synthesised in a batch of its own, the others after it.
    text = " ".join(f"Sentence {i} of a long reading, which keeps going." for i in range(24))
    body = {"model": "tts-1", "voice": voice, "input": text, "seed": 5}
    body |= {"response_format": "pcm"}
    with httpx.Client(base_url=served.base, timeout=120) as client:
        expected = client.post("/v1/audio/speech", json=body).content
        with client.stream("POST", "/v1/audio/speech", json=body) as stream:
            chunks = stream.iter_bytes()
            received = next(chunks)
            served.process.send_signal(signal.SIGTERM)
            wait_until(lambda: client.get("/ready").status_code == 503, timeout=30, what="draining")
            late = client.post("/v1/audio/speech", json={**body, "input": "Too late."})
            after_signal = b"".join(chunks)
        assert late.status_code == 503 and late.json()["error"]["code"] == "shutting_down"
        assert late.headers["retry-after"] == "5"
        # Complete: as long as an undisturbed run, and the same audio (within batching's float
        # tolerance: batches may form differently, and a last-bit rounding moves a pcm sample).
        got = np.frombuffer(received + after_signal, np.int16).astype(np.float32) / 32768
        want = np.frombuffer(expected, np.int16).astype(np.float32) / 32768
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-2
    log = served.log.read_text()
    assert "waiting for 1 request(s) in flight" in log, "the stream was not in flight"


def test_a_second_signal_stops_at_once(tmp_path: Path, tiny_weights: TinyWeights) -> None:
    port = free_port()
    data = served_config_data(tiny_weights, ray={"metrics_export_port": None}, shutdown_grace_s=90)
    config = write_config(tmp_path / "engine.yaml", data)
    with serving(config, port, tmp_path / "serve.log") as served:
        # Slow speech, so that the synthesizer holds minutes of work when the signals come.
        text = " ".join(f"Sentence {i} of a long reading, which keeps going." for i in range(40))
        body = {"model": "tts-1", "voice": "alloy", "input": text, "speed": 0.5}
        with httpx.Client(base_url=served.base, timeout=120) as client, ExitStack() as streams:
            for _ in range(4):
                stream = streams.enter_context(client.stream("POST", "/v1/audio/speech", json=body))
                chunks = streams.enter_context(closing(stream.iter_bytes()))
                next(chunks)  # kept open until the end: closing it would hang the request up
            served.process.send_signal(signal.SIGINT)
            wait_until(
                lambda: "request(s) in flight" in served.log.read_text(),
                timeout=30,
                what="the drain",
            )
            served.process.send_signal(signal.SIGINT)
            # Serve's graceful shutdown of the model replicas, which finishes the work they
            # hold, is skipped: it took 9-13 s here, and 30 s in a review with longer batches.
            served.process.wait(timeout=15)
    log = served.log.read_text()
    assert "received SIGINT again, stopping now" in log
    assert "not waiting for the models' work" in log
