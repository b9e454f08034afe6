"""VAD throughput: streams per second through the real worker and scheduler, batched versus
``max_batch_size=1``, measured in the same run on the same streams."""

from __future__ import annotations

from concurrent.futures import wait
from pathlib import Path

import numpy as np

from benchmarks.harness import BenchResult, best_of, timed
from harmonyspeech.audio import decode_audio
from harmonyspeech.config import BatchingPolicy, SileroVadModelConfig
from harmonyspeech.engine.worker import ModelWorker
from harmonyspeech.models.silero_vad import SileroVadAdapter
from harmonyspeech.models.types import VadRequest

CLIPS = Path(__file__).resolve().parents[1] / "tests" / "data" / "vad"


def streams(count: int) -> list[np.ndarray]:
    clips = [decode_audio(p.read_bytes(), sample_rate=16000).samples for p in CLIPS.glob("*.flac")]
    return [clips[i % len(clips)] for i in range(count)]


def throughput(batch_size: int, audio: list[np.ndarray], repeats: int) -> dict[str, float]:
    config = SileroVadModelConfig(name="vad", family="silero-vad", num_threads=1)
    policy = BatchingPolicy(max_batch_size=batch_size, max_wait_ms=2, max_queue=len(audio))
    worker = ModelWorker(SileroVadAdapter(config), policy, name="vad")
    worker.start()
    worker.wait_ready(60)
    try:

        def run() -> None:
            futures = [worker.submit(VadRequest(a, 16000)) for a in audio]
            wait(futures)
            for future in futures:
                future.result()

        seconds = best_of(repeats, lambda: timed(run))
    finally:
        worker.stop()
    audio_s = sum(len(a) for a in audio) / 16000
    return {
        "max_batch_size": batch_size,
        "streams": len(audio),
        "wall_s": seconds,
        "streams_per_s": len(audio) / seconds,
        "audio_s_per_s": audio_s / seconds,
    }


def run(quick: bool = False) -> BenchResult:
    audio = streams(32 if quick else 64)
    repeats = 1 if quick else 3
    rows = [throughput(size, audio, repeats) for size in (1, 8, 32)]
    baseline = rows[0]["streams_per_s"]
    for row in rows:
        row["speedup_vs_batch1"] = row["streams_per_s"] / baseline
    return BenchResult(
        "vad",
        rows,
        summary={"batched_32_vs_batch_1": rows[-1]["speedup_vs_batch1"]},
    )
