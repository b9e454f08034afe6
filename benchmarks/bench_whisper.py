"""Transcription throughput at concurrency 16: windows of 16 requests batched versus one at a time
(``max_batch_size=1``), in one run, through the real worker and scheduler.

Whisper has the real ``tiny`` dimensions and random weights; every window decodes a fixed number of
tokens (``max_new_tokens``), roughly the density of real speech, so both modes do the same work.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import wait
from pathlib import Path

import numpy as np

from benchmarks.harness import BenchResult, best_of, timed
from harmonyspeech.audio import decode_audio
from harmonyspeech.config import BatchingPolicy, FasterWhisperModelConfig
from harmonyspeech.engine.worker import ModelWorker
from harmonyspeech.models.faster_whisper import FasterWhisperAdapter
from harmonyspeech.models.types import TranscribeWindow
from harmonyspeech.models.whisper_fixtures import EOT, build_whisper_model

CLIPS = Path(__file__).resolve().parents[1] / "tests" / "data" / "vad"
CONCURRENCY = 16


def requests(count: int) -> list[np.ndarray]:
    clips = [decode_audio(p.read_bytes(), sample_rate=16000).samples for p in CLIPS.glob("*.flac")]
    return [clips[i % len(clips)] for i in range(count)]


def throughput(model_dir: Path, batch_size: int, audio: list[np.ndarray], repeats: int) -> dict:
    config = FasterWhisperModelConfig(
        name="whisper",
        family="faster-whisper",
        num_threads=2,
        weights={"path": str(model_dir)},
        # Suppressing end-of-text makes every window decode max_new_tokens, like real speech;
        # random weights would otherwise stop after a few tokens.
        options={
            "compute_type": "int8",
            "beam_size": 1,
            "max_new_tokens": 60,
            "suppress_tokens": [-1, EOT],
        },
    )
    policy = BatchingPolicy(max_batch_size=batch_size, max_wait_ms=5, max_queue=len(audio))
    worker = ModelWorker(FasterWhisperAdapter(config), policy, name="whisper")
    worker.start()
    worker.wait_ready(120)

    def run() -> None:
        futures = [worker.submit(TranscribeWindow(a, language="en")) for a in audio]
        wait(futures)
        for future in futures:
            future.result()

    try:
        run()  # warm-up
        seconds = best_of(repeats, lambda: timed(run))
    finally:
        worker.stop()
    audio_s = sum(len(a) for a in audio) / 16000
    return {
        "max_batch_size": batch_size,
        "requests": len(audio),
        "wall_s": seconds,
        "audio_s_per_s": audio_s / seconds,
    }


def run(quick: bool = False) -> BenchResult:
    audio = requests(CONCURRENCY)
    repeats = 1 if quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        model = build_whisper_model(Path(tmp) / "tiny", size="toy" if quick else "tiny")
        rows = [throughput(model, size, audio, repeats) for size in (1, CONCURRENCY)]
    rows[0]["speedup"] = 1.0
    rows[1]["speedup"] = rows[1]["audio_s_per_s"] / rows[0]["audio_s_per_s"]
    return BenchResult(
        "whisper",
        rows,
        summary={
            "model": "toy" if quick else "tiny dims, random weights, int8",
            "batched_vs_sequential_at_c16": rows[1]["speedup"],
        },
    )
