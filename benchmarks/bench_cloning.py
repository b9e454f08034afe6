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
Both models run with ``dtype: auto``, as ``configs/default.yaml`` sets.

Before the app starts, the converter also runs alone in this process, item by item as on CPU,
over six utterances of 1.7-6.3 s (seeded noise: its cost does not depend on the content), with
a float32 and with a bfloat16 decoder: ``bfloat16_over_float32`` is their throughput ratio,
``bfloat16_snr_db`` how far above its difference from float32 the waveform stays.

Run: ``python -m benchmarks cloning [--quick]`` (or ``make bench`` for all).
"""

from __future__ import annotations

import asyncio
import math
import os
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
CONVERTER_SECONDS = (1.7, 2.1, 3.4, 4.2, 5.0, 6.3)
"""Lengths of the utterances the converter converts alone (about one sentence each)."""


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
            "dtype": "auto",
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


def converter_rows(converter: Path) -> tuple[list[dict], dict[str, float]]:
    """The converter alone in this process with a float32 and a bfloat16 decoder, one warm
    pass then one timed pass each, item by item (the CPU default)."""
    import numpy as np
    import torch

    from harmonyspeech.models.allocator import retain_freed_memory
    from harmonyspeech.models.openvoice import ConversionItem, ToneColorConverter

    retain_freed_memory()  # as the model workers do
    torch.set_num_threads(os.cpu_count() or 1)
    rng = np.random.default_rng(0)
    tone = np.linspace(-0.1, 0.1, 256, dtype=np.float32)
    items = [
        ConversionItem((0.1 * rng.standard_normal(int(s * 22050))).astype(np.float32),
                       tone, -tone, seed=index)
        for index, s in enumerate(CONVERTER_SECONDS)
    ]  # fmt: skip
    audio_s = sum(CONVERTER_SECONDS)
    rows, waves = [], {}
    for dtype in ("float32", "bfloat16"):
        model = ToneColorConverter.from_checkpoint_dir(converter, dtype=dtype)
        model.convert(items)
        started = time.perf_counter()
        waves[dtype] = model.convert(items)
        wall = time.perf_counter() - started
        rows.append({"variant": f"converter alone, {dtype} decoder", "audio_s": audio_s,
                     "wall_s": wall, "x_realtime": audio_s / wall})  # fmt: skip
    signal = sum(float(np.sum(w.astype(np.float64) ** 2)) for w in waves["float32"])
    error = sum(
        float(np.sum((a.astype(np.float64) - b) ** 2))
        for a, b in zip(waves["float32"], waves["bfloat16"], strict=True)
    )
    summary = {
        "bfloat16_over_float32": rows[1]["x_realtime"] / rows[0]["x_realtime"],
        "bfloat16_max_abs_diff": max(
            float(np.abs(a - b).max())
            for a, b in zip(waves["float32"], waves["bfloat16"], strict=True)
        ),
        "bfloat16_snr_db": 10 * math.log10(signal / error),
    }
    return rows, summary


def run(quick: bool = False) -> BenchResult:
    """``quick``: tiny models and fewer requests."""
    from benchmarks.bench_batch import build_models
    from harmonyspeech.models.openvoice import build_converter_checkpoint

    size, requests = ("tiny", 16) if quick else ("real", 16)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint, bert = build_models(root, size)
        converter = build_converter_checkpoint(root / "openvoice", size=size)
        alone, precision = converter_rows(converter)
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
        **precision,
    }
    return BenchResult("cloning", [*alone, builtin, clone], summary)
