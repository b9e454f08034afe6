"""Batch jobs vs the same lines sent one by one.

One real Ray Serve app (as ``harmonyspeech serve`` runs it) serves MeloTTS: the real-size
English network with random weights and a bert-base-shaped random BERT, or the tiny test-size
network (where per-request overheads dominate). The same JSONL lines (one to three sentences
each, ``wav``, seeded) are synthesised twice, each time into a fresh directory:

* ``one_by_one``: what a script without batch support does: ``POST /v1/audio/speech`` with
  ``stream: false`` per line, waiting for each answer and writing the file;
* ``batch_job``: ``run_batch`` attached to the running app's deployments (what
  ``harmonyspeech batch run`` does inside a submitted Ray job), 16 lines in flight at batch
  priority.

Throughput is lines per second and audio seconds per wall second; ``speedup`` is the batch job's
audio-s/s over one by one, measured in the same run.

Run: ``python -m benchmarks batch [--quick]`` (or ``make bench`` for all).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bench_frontend import SENTENCES
from benchmarks.bench_speech_http import engine_config, served
from benchmarks.harness import BenchResult
from tests.helpers import free_port

CONCURRENCY = 16


def lines(count: int) -> list[dict[str, Any]]:
    """``count`` requests of one to three benchmark sentences."""
    out = []
    for n in range(count):
        sentences = [SENTENCES[(n + k) % len(SENTENCES)] for k in range(1 + n % 3)]
        out.append({"id": f"l{n:04d}", "input": " ".join(sentences), "voice": "alloy", "seed": n})
    return out


def one_by_one(base_url: str, requests: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    out.mkdir(parents=True)
    audio_s = 0.0
    started = time.perf_counter()
    with httpx.Client(base_url=base_url, timeout=900) as http:
        for line in requests:
            body = {k: v for k, v in line.items() if k != "id"}
            body |= {"model": "tts-1", "response_format": "pcm", "stream": False}
            response = http.post("/v1/audio/speech", json=body)
            response.raise_for_status()
            (out / f"{line['id']}.pcm").write_bytes(response.content)
            audio_s += len(response.content) / (24000 * 2)
    return _row("one_by_one", len(requests), audio_s, time.perf_counter() - started)


async def batch_job(requests: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    from harmonyspeech.batch.job import BatchOptions, run_batch
    from harmonyspeech.batch.lines import parse_lines
    from harmonyspeech.serve.app import APP_NAME
    from harmonyspeech.serve.attach import attached_runtime

    runtime = await attached_runtime(APP_NAME)
    numbered = [(n, json.dumps(line)) for n, line in enumerate(requests, start=1)]
    parsed = parse_lines(numbered, {"model": "tts-1", "response_format": "pcm"})
    summary = await run_batch(runtime, parsed, out, BatchOptions(concurrency=CONCURRENCY))
    assert summary.done == len(requests), summary.describe()
    return _row("batch_job", len(requests), summary.audio_seconds, summary.wall_seconds)


def _row(mode: str, count: int, audio_s: float, wall_s: float) -> dict[str, Any]:
    return {
        "mode": mode,
        "lines": count,
        "audio_s": audio_s,
        "wall_s": wall_s,
        "lines_per_s": count / wall_s,
        "audio_s_per_s": audio_s / wall_s,
    }


def build_models(root: Path, size: str) -> tuple[Path, Path]:
    from harmonyspeech.models.bert_fixtures import DEFAULT_WORDS, build_tiny_bert_dir
    from harmonyspeech.models.melo import build_melo_checkpoint

    checkpoint = build_melo_checkpoint(root / f"melo-{size}", size=size, seed=0)
    words = {w.strip(".,;:!?\"'").lower() for s in SENTENCES for w in s.split()}
    real = size == "real"
    bert = build_tiny_bert_dir(
        root / f"bert-{size}",
        words=[*DEFAULT_WORDS, *words],
        hidden_size=768,
        num_layers=12 if real else 2,
        num_heads=12,
        intermediate_size=3072 if real else 768,
    )
    return checkpoint, bert


def measure(size: str, count: int, root: Path) -> list[dict[str, Any]]:
    checkpoint, bert = build_models(root, size)
    requests = lines(count)
    with served(engine_config(checkpoint, bert, free_port())) as base_url:
        # Warm-up: the first requests pay for kernel creation of their shapes.
        one_by_one(base_url, lines(3), root / f"warm-{size}")
        rows = [
            one_by_one(base_url, requests, root / f"one-{size}"),
            asyncio.run(batch_job(requests, root / f"batch-{size}")),
        ]
    for row in rows:
        row["model"] = size
    return rows


def run(quick: bool = False) -> BenchResult:
    """``quick``: fewer lines, tiny model only."""
    plans = [("tiny", 24)] if quick else [("tiny", 96), ("real", 24)]
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"concurrency": CONCURRENCY}
    with tempfile.TemporaryDirectory() as tmp:
        for size, count in plans:
            one, batch = measure(size, count, Path(tmp))
            rows += [one, batch]
            summary[f"speedup_{size}"] = batch["audio_s_per_s"] / one["audio_s_per_s"]
    return BenchResult("batch", rows, summary)
