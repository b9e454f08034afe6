"""``POST /v1/audio/speech`` through HTTP: time to first audio byte and throughput under load.

The real Ray Serve application (the same one ``harmonyspeech serve`` deploys) serves one
MeloTTS model: the real-size English network with random weights (``build_melo_checkpoint``)
and a bert-base-shaped random BERT (12 layers, 768 wide), with as many torch threads as the
machine has cores and ``dtype: auto`` (as ``configs/default.yaml``: a bfloat16 decoder on CPUs
with native bf16).
Clients send one-sentence requests (``pcm``, seeded) with ``c`` requests in flight:

* ``ttfb`` is the time from sending a request to its first audio byte; ``stream=false`` answers
  with the whole file, so there it is the full latency;
* ``audio_s_per_s`` is the audio returned per wall second over the whole run.

A separate check at concurrency 1 compares, for a text of several sentence items, the streamed
time to first byte with the time to synthesise its first item alone (a non-streamed request of
just that text; the model's own busy time for it is reported too). Target: within 1.5x.

Run: ``python -m benchmarks speech_http [--quick]`` (or ``make bench`` for all).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bench_frontend import SENTENCES
from benchmarks.harness import BenchResult
from harmonyspeech.config import EngineConfig, load_config
from tests.helpers import answers, free_port, wait_until

PCM_BYTES_PER_S = 24000 * 2
MODEL = "melo-en"


def engine_config(checkpoint: Path, bert: Path, port: int) -> EngineConfig:
    return load_config(
        {
            "server": {
                "host": "127.0.0.1",
                "port": port,
                "limits": {"request_timeout_s": 900},
                "ingress": {"num_cpus": 0.25, "max_ongoing_requests": 512},
            },
            "models": [
                {
                    "name": MODEL,
                    "family": "melotts",
                    "device": "cpu",
                    "dtype": "auto",  # as configs/default.yaml
                    "num_threads": os.cpu_count() or 1,
                    "weights": {"path": str(checkpoint)},
                    "options": {"voices": {"alloy": "EN-US"}, "bert": {"source": str(bert)}},
                    "batching": {
                        "max_batch_size": 16,
                        "max_batch_cost": 4000,
                        "max_wait_ms": 10,
                        "max_queue": 1024,
                    },
                    "deployment": {"num_cpus": 1, "max_ongoing_requests": 1024},
                }
            ],
            "pipelines": [
                {
                    "name": "tts",
                    "aliases": ["tts-1"],
                    "stages": [{"kind": "synthesize", "model": MODEL}],
                }
            ],
        }
    )


@contextlib.contextmanager
def served(config: EngineConfig) -> Iterator[str]:
    """The app as ``harmonyspeech serve`` runs it; yields its base URL once models are loaded."""
    from harmonyspeech.serve.ray_env import prepare_ray_auth

    prepare_ray_auth(config.server.ray.address)
    from harmonyspeech.serve import local

    try:
        base_url = local.start(config)
        wait_until(answers(f"{base_url}/ready"), timeout=600, what="the model to load")
        yield base_url
    finally:
        local.stop()


async def one_request(
    http: httpx.AsyncClient, text: str, seed: int, *, stream: bool
) -> tuple[float, float, float]:
    """(time to first audio byte, total time, audio seconds) of one request."""
    body = {
        "model": "tts-1",
        "voice": "alloy",
        "input": text,
        "response_format": "pcm",
        "seed": seed,
        "stream": stream,
    }
    started = time.perf_counter()
    first: float | None = None
    size = 0
    async with http.stream("POST", "/v1/audio/speech", json=body) as response:
        response.raise_for_status()
        async for chunk in response.aiter_bytes():
            if chunk and first is None:
                first = time.perf_counter() - started
            size += len(chunk)
    total = time.perf_counter() - started
    return first if first is not None else total, total, size / PCM_BYTES_PER_S


async def load(base_url: str, concurrency: int, requests: int, *, stream: bool) -> dict[str, Any]:
    gate = asyncio.Semaphore(concurrency)

    async def bounded(index: int) -> tuple[float, float, float]:
        async with gate:
            text = SENTENCES[index % len(SENTENCES)]
            return await one_request(http, text, seed=index, stream=stream)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=900, limits=limits) as http:
        started = time.perf_counter()
        results = await asyncio.gather(*(bounded(i) for i in range(requests)))
        wall = time.perf_counter() - started
    ttfbs = sorted(r[0] for r in results)
    audio = sum(r[2] for r in results)
    return {
        "stream": stream,
        "concurrency": concurrency,
        "requests": requests,
        "ttfb_p50_s": statistics.median(ttfbs),
        "ttfb_p95_s": _percentile(ttfbs, 0.95),
        "audio_s": audio,
        "wall_s": wall,
        "audio_s_per_s": audio / wall,
    }


def _percentile(ordered: list[float], q: float) -> float:
    index = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[index]


def busy_s(base_url: str) -> float:
    stats = httpx.get(f"{base_url}/v1/models/instance:{MODEL}", timeout=30).json()
    return float(stats["details"]["stats"]["busy_s"])


async def first_byte_check(base_url: str) -> dict[str, Any]:
    """Streamed TTFB of a multi-item text vs synthesising its first item alone."""
    from harmonyspeech.text import split_sentences_latin

    text = " ".join(SENTENCES)
    items = split_sentences_latin(text)
    async with httpx.AsyncClient(base_url=base_url, timeout=900) as http:
        before = busy_s(base_url)
        _, alone_s, _ = await one_request(http, items[0], seed=1, stream=False)
        alone_busy = busy_s(base_url) - before
        ttfb, total, audio = await one_request(http, text, seed=1, stream=True)
    return {
        "items_in_text": len(items),
        "first_item_chars": len(items[0]),
        "first_item_alone_s": alone_s,
        "first_item_alone_model_busy_s": alone_busy,
        "streamed_ttfb_s": ttfb,
        "streamed_total_s": total,
        "streamed_audio_s": audio,
        "ttfb_over_first_item_alone": ttfb / alone_s,
    }


def run(quick: bool = False) -> BenchResult:
    """``quick``: concurrency 1 and 8 only, streaming on."""
    from harmonyspeech.models.bert_fixtures import DEFAULT_WORDS, build_tiny_bert_dir
    from harmonyspeech.models.melo import build_melo_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint = build_melo_checkpoint(root / "melo", size="real", seed=0)
        words = {w.strip(".,;:!?\"'").lower() for s in SENTENCES for w in s.split()}
        bert = build_tiny_bert_dir(
            root / "bert",
            words=[*DEFAULT_WORDS, *words],
            hidden_size=768,
            num_layers=12,
            num_heads=12,
            intermediate_size=3072,
        )
        with served(engine_config(checkpoint, bert, free_port())) as base_url:
            # Warm-up: the first requests pay for oneDNN kernel creation of their shapes.
            asyncio.run(load(base_url, 4, 4, stream=False))
            rows = []
            for stream in (True,) if quick else (True, False):
                for concurrency in (1, 8) if quick else (1, 8, 32):
                    requests = max(8, concurrency)
                    rows.append(asyncio.run(load(base_url, concurrency, requests, stream=stream)))
            check = asyncio.run(first_byte_check(base_url))
    by = {(r["stream"], r["concurrency"]): r for r in rows}
    top = max(c for _, c in by)
    summary = {
        **check,
        "target_ttfb_over_first_item_alone": 1.5,
        f"throughput_c{top}_over_c1": by[(True, top)]["audio_s_per_s"]
        / by[(True, 1)]["audio_s_per_s"],
    }
    return BenchResult("speech_http", rows, summary)
