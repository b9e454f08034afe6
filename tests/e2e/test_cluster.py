"""A real Ray cluster (``ray start --head``, token auth on, loopback dashboard): the app deployed
with ``serve deploy`` from ``build-serve-config``, and batch jobs through ``ray job submit``."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from harmonyspeech.audio import decode_audio
from tests.conftest import TinyWeights, served_config_data, write_config
from tests.helpers import answers, free_port, terminate, wait_until

BIN = Path(sys.executable).parent
VOICES = ("alloy", "echo", "nova")
TEXT = "Batch line number {n} is checked by Whisper."


@dataclass(frozen=True)
class Cluster:
    dashboard: str
    address: str
    """The GCS address that drivers (``server.ray.address``) join."""
    env: dict[str, str]
    serve_port: int

    def run(self, *command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )


def _responds(url: str):
    def check() -> bool:
        try:
            httpx.get(url, timeout=2)
        except httpx.HTTPError:
            return False
        return True

    return check


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """``ray start --head --block``: terminating that process stops exactly this cluster."""
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        # Job entrypoints run `python`: as on a user's cluster, the one with harmonyspeech.
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    dashboard_port, gcs_port = free_port(), free_port()
    log = (tmp_path_factory.mktemp("cluster") / "ray.log").open("w")
    # A private (short: socket paths) temp dir, so the machine's default cluster address file
    # never points at this short-lived cluster.
    temp_dir = tempfile.mkdtemp(prefix="hsray-")
    head = subprocess.Popen(
        [
            str(BIN / "ray"), "start", "--head", "--block", "--disable-usage-stats",
            "--temp-dir", temp_dir, "--num-cpus", "4", "--port", str(gcs_port),
            "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
            "--dashboard-port", str(dashboard_port),
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    try:
        wait_until(_responds(f"{dashboard}/api/version"), timeout=120, what="the Ray dashboard")
        yield Cluster(dashboard, f"127.0.0.1:{gcs_port}", env, free_port())
    finally:
        terminate(head, grace_s=90)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def deployed(cluster: Cluster, tiny_weights: TinyWeights, tmp_path_factory) -> Iterator[str]:
    """The test config deployed with the CLI's Serve config; returns its base URL."""
    folder = tmp_path_factory.mktemp("deploy")
    engine = write_config(
        folder / "engine.yaml", served_config_data(tiny_weights, port=cluster.serve_port)
    )
    serve_config = folder / "serve.yaml"
    built = cluster.run(
        str(BIN / "harmonyspeech"), "build-serve-config", "--config", str(engine),
        "-o", str(serve_config),
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    deploy = cluster.run(str(BIN / "serve"), "deploy", str(serve_config), "-a", cluster.dashboard)
    assert deploy.returncode == 0, deploy.stderr
    base = f"http://127.0.0.1:{cluster.serve_port}"
    wait_until(answers(f"{base}/ready"), timeout=240, what="the deployed app to be ready")
    yield base
    # An app left running makes the head drain for 30 s on shutdown.
    cluster.run(str(BIN / "serve"), "shutdown", "-y", "-a", cluster.dashboard)


def test_built_serve_config_deploys_and_answers(deployed: str) -> None:
    from openai import OpenAI

    with OpenAI(base_url=f"{deployed}/v1", api_key="unused", max_retries=0) as client:
        speech = client.audio.speech.create(
            model="tts-1", voice="alloy", input="Hello from the cluster.", response_format="wav"
        )
        audio = decode_audio(speech.content, sample_rate=16000)
    assert audio.duration > 0.2


def _write_input(path: Path, count: int) -> dict[str, str]:
    """``count`` lines, two of them bad; returns the bad ids and what their error must say."""
    lines = [
        json.dumps(
            {"id": f"p{n:02d}", "input": TEXT.format(n=n), "voice": VOICES[n % 3], "seed": n}
        )
        for n in range(count - 2)
    ]
    lines.insert(5, "{not json")
    lines.append(json.dumps({"id": "nobody", "input": "Who speaks?", "voice": "nobody"}))
    path.write_text("\n".join(lines) + "\n")
    return {"line-6": "not JSON", "nobody": "unknown voice"}


def _manifest(out: Path) -> list[dict]:
    path = out / "manifest.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_batch_job_stopped_midway_resumes_to_a_complete_manifest(
    cluster: Cluster, deployed: str, tmp_path: Path
) -> None:
    source = tmp_path / "book.jsonl"
    bad = _write_input(source, 20)
    out = tmp_path / "out"
    submit = [
        str(BIN / "harmonyspeech"), "batch", "submit", str(source), "--out", str(out),
        "--address", cluster.dashboard, "--model", "tts-validated", "--response-format", "wav",
        "--no-progress",
    ]  # fmt: skip
    # One line at a time, so that the job is surely stopped midway.
    first = cluster.run(*submit, "--concurrency", "1", "--submission-id", "book-1", "--no-wait")
    assert first.returncode == 0, first.stderr
    wait_until(lambda: len(_manifest(out)) >= 2, timeout=180, what="the first lines")
    stopped = cluster.run(str(BIN / "ray"), "job", "stop", "book-1", "--address", cluster.dashboard)
    assert stopped.returncode == 0, stopped.stderr
    after_stop = _manifest(out)
    assert 2 <= len(after_stop) < 20, "the job must be stopped midway"

    second = cluster.run(*submit, "--concurrency", "8", "--submission-id", "book-2")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "SUCCEEDED" in second.stderr
    assert "using the running Serve app 'harmonyspeech'" in second.stdout

    records = _manifest(out)
    ids = [record["id"] for record in records]
    assert len(ids) == len(set(ids)) == 20
    for record in records:
        if record["id"] in bad:
            assert record["status"] == "failed"
            assert bad[record["id"]] in record["error"]["message"]
            continue
        assert record["status"] == "ok", record
        assert record["validation"]["metric"] == "wer"
        audio = decode_audio((out / record["path"]).read_bytes(), sample_rate=16000)
        assert abs(audio.duration - record["duration"]) < 0.05
    assert not list(out.glob(".partial-*"))
    summary = json.loads((out / "summary.json").read_text())
    done_before = sum(record["status"] == "ok" for record in after_stop)
    assert summary["skipped"] == done_before
    assert summary["done"] == 18 - done_before and summary["failed"] == 2


# Last in this module: the joined `harmonyspeech serve` takes the deployed app's place.
def test_serve_joining_the_cluster_stops_only_its_own_app(
    cluster: Cluster, deployed: str, tiny_weights: TinyWeights, tmp_path: Path
) -> None:
    data = served_config_data(tiny_weights, port=free_port())
    data["server"]["ray"] = {"address": cluster.address, "metrics_export_port": None}
    config = write_config(tmp_path / "joined.yaml", data)
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(BIN / "harmonyspeech"), "serve", "--config", str(config)],
            env=cluster.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        listening = f"harmonyspeech listening on {deployed}"
        wait_until(lambda: listening in log_path.read_text(), timeout=180, what=listening)
        # Serve already ran here on its own port, which is where the app is, and says so.
        assert "server.host and server.port" in log_path.read_text()
        wait_until(answers(f"{deployed}/ready"), timeout=240, what="the joined app")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 0, log_path.read_text()[-3000:]
    finally:
        terminate(process, grace_s=30)
    status = cluster.run(str(BIN / "serve"), "status", "-a", cluster.dashboard)
    assert status.returncode == 0, status.stderr
    state = yaml.safe_load(status.stdout)
    # Its app is gone; Serve itself, and so any other app on the cluster, still runs.
    assert "harmonyspeech" not in (state.get("applications") or {})
    assert state.get("proxies"), status.stdout
