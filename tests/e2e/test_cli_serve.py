"""``harmonyspeech serve`` as a user runs it: start, answer, stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx

from tests.conftest import ROOT, TinyWeights, served_config_data, write_config
from tests.helpers import answers, free_port, wait_until
from tests.unit.vad_clips import clip_bytes


def test_serve_command_serves_and_stops_cleanly(tmp_path, tiny_weights: TinyWeights) -> None:
    port = free_port()
    config = write_config(tmp_path / "engine.yaml", served_config_data(tiny_weights))
    log = (tmp_path / "serve.log").open("w")
    command = ["harmonyspeech", "serve", "--config", str(config), "--port", str(port)]
    process = subprocess.Popen(
        [sys.executable, "-m", *command],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(answers(f"{base}/ready"), timeout=120, what="harmonyspeech serve")
        files = {"file": ("c.flac", clip_bytes("short"))}
        response = httpx.post(f"{base}/v1/audio/vad", files=files, timeout=60)
        assert response.status_code == 200 and response.json()["segments"]
        assert f"listening on {base}" in (tmp_path / "serve.log").read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    assert code == 0
    assert "stopped" in (tmp_path / "serve.log").read_text()
