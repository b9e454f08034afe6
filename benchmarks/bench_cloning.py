"""Speech in a cloned voice vs a built-in voice, over HTTP at concurrency 8.

One real Ray Serve app (as ``harmonyspeech serve`` runs it) with the ``tts`` pipeline
``synthesize -> convert``: MeloTTS English (random weights; real size, or the tiny test size with
``--quick``), a bert-base-shaped random BERT, and the OpenVoice V2 converter (random weights,
the same size). A voice is cloned from a committed test recording through ``POST
/v1/audio/voices`` (VAD -> embedding). Then the same one-sentence requests (``pcm``, seeded,
``stream: false``) run with 8 in flight, once with the built-in voice ``alloy`` (the convert
stage passes it through) and once with the cloned voice (each sentence converted, batched
across requests). ``cloned_over_builtin`` is the cloned voice's audio-s/s over the built-in one's,
measured in the same run; the converter's batch sizes show conversion batching across requests.

Run: ``python -m benchmarks cloning [--quick]`` (or ``make bench`` for all).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bench_frontend import SENTENCES
from benchmarks.bench_speech_http import engine_config, served
from benchmarks.harness import BenchResult
from harmonyspeech.config import load_config
from tests.helpers import free_port

CONCURRENCY = 8
PCM_BYTES_PER_S = 24000 * 2
REFERENCE = Path(__file__).resolve().parents[1] / "tests/data/vad/two_phrases.flac"


def cloning_config(checkpoint: Path, bert: Path, converter: Path, voices: Path, size: str):
    data = engine_config(checkpoint, bert, free_port()).model_dump()
    data["server"]["voices"] = {"path": str(voices)}
    data["models"] += [
        {
            "name": "silero-vad",
            "family": "silero-vad",
            "num_threads": 1,
            "deployment": {"num_cpus": 0.25, "max_ongoing_requests": 256},
        },
        {
            "name": "openvoice",
            "family": "openvoice",
            "num_threads": data["models"][0]["num_threads"],
            "weights": {"path": str(converter)},
            "options": {"min_speech_s": 3.0, "random_size": size},
            "batching": {"max_batch_size": 16, "max_wait_ms": 10, "max_queue": 1024},
            "deployment": {"num_cpus": 0.25, "max_ongoing_requests": 1024},
        },
    ]
    data["pipelines"][0]["stages"].append(
        {"kind": "convert", "model": "openvoice", "options": {"base_speaker": "EN-US"}}
    )
    data["pipelines"].append(
        {
            "name": "clone",
            "stages": [
                {"kind": "vad", "model": "silero-vad"},
                {"kind": "embed", "model": "openvoice"},
            ],
        }
    )
    return load_config(data)


async def load(base_url: str, voice: str, requests: int) -> dict[str, Any]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(index: int, http: httpx.AsyncClient) -> float:
        body = {
            "model": "tts-1",
            "voice": voice,
            "input": SENTENCES[index % len(SENTENCES)],
            "response_format": "pcm",
            "seed": index,
            "stream": False,
        }
        async with gate:
            response = await http.post("/v1/audio/speech", json=body)
        response.raise_for_status()
        return len(response.content) / PCM_BYTES_PER_S

    async with httpx.AsyncClient(base_url=base_url, timeout=1800) as http:
        started = time.perf_counter()
        audio = sum(await asyncio.gather(*(one(i, http) for i in range(requests))))
        wall = time.perf_counter() - started
    return {"requests": requests, "audio_s": audio, "wall_s": wall, "audio_s_per_s": audio / wall}


def converter_stats(base_url: str) -> dict[str, Any]:
    details = httpx.get(f"{base_url}/v1/models/instance:openvoice", timeout=30).json()["details"]
    return details["stats"]


def run(quick: bool = False) -> BenchResult:
    """``quick``: tiny models and fewer requests."""
    from benchmarks.bench_batch import build_models
    from harmonyspeech.models.openvoice import build_converter_checkpoint

    size, requests = ("tiny", 16) if quick else ("real", 16)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint, bert = build_models(root, size)
        converter = build_converter_checkpoint(root / "openvoice", size=size)
        config = cloning_config(checkpoint, bert, converter, root / "voices", size)
        with served(config) as base_url:
            files = {"file": ("ref.flac", REFERENCE.read_bytes())}
            created = httpx.post(
                f"{base_url}/v1/audio/voices", files=files, data={"name": "bench"}, timeout=600
            )
            created.raise_for_status()
            cloned = created.json()["id"]
            asyncio.run(load(base_url, "alloy", 2))  # warm-up of both paths
            asyncio.run(load(base_url, cloned, 2))
            builtin = {"voice": "builtin", **asyncio.run(load(base_url, "alloy", requests))}
            clone = {"voice": "cloned", **asyncio.run(load(base_url, cloned, requests))}
            stats = converter_stats(base_url)
    for row in (builtin, clone):
        row["model"] = size
    summary = {
        "concurrency": CONCURRENCY,
        "cloned_over_builtin": clone["audio_s_per_s"] / builtin["audio_s_per_s"],
        "converter_batch_sizes": stats["batch_sizes"],
        "converter_mean_batch": stats["mean_batch_size"],
    }
    return BenchResult("cloning", [builtin, clone], summary)
