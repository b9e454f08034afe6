"""End-to-end English synthesis, single stream: text frontend + BERT + MeloTTS network.

What the ``melo-en`` worker does per sentence, composed from the same public pieces
(``EnglishFrontend``, ``to_sequence``, ``BertFeatureExtractor``, ``MeloSynthesizer``) and timed
part by part, one sentence at a time (a single client, no batching):

* the real-size MeloTTS English network (random weights from ``build_melo_checkpoint``);
* the real ``bert-base-uncased`` architecture (``BertConfig()``, 110 M parameters), random;
* the frontend with a vocabulary that holds every benchmark word, as bert-base-uncased does.

Two passes over the sentences: the first meets every sequence length for the first time (what a
server sees, in case kernels are built per shape), the second runs them again; both again with
the network's decoder in bfloat16 (``dtype``; fast on CPUs with native bf16). Throughput is
audio seconds per wall second (``x_realtime``; the real-time factor is its inverse).

The ``validate`` stage's cost comes last: Whisper with the real ``tiny`` dimensions (random
weights, int8, as ``bench_whisper``) transcribes each synthesised sentence, decoding a fixed 30
tokens (about what a 14-word sentence takes); ``validation_overhead`` is its time as a fraction
of the warm synthesis time.

Run: ``python -m benchmarks tts [--quick]`` (or ``make bench`` for all).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_frontend import SENTENCES, _tokenizer
from benchmarks.harness import BenchResult
from harmonyspeech.models.allocator import retain_freed_memory
from harmonyspeech.models.melo import MeloSynthesizer, SynthesisItem, build_melo_checkpoint
from harmonyspeech.models.melotts import FRONTEND_WARM_UP
from harmonyspeech.text import EnglishFrontend, symbol_table, to_sequence

PARTS = ("frontend", "bert", "network")


def build(tmp: Path) -> tuple[EnglishFrontend, object, MeloSynthesizer, dict[str, int]]:
    from transformers import BertConfig, BertForMaskedLM

    from harmonyspeech.models.bert import BertFeatureExtractor

    synth = MeloSynthesizer.from_checkpoint_dir(build_melo_checkpoint(tmp, size="real", seed=0))
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig()).eval().requires_grad_(False)
    bert = BertFeatureExtractor(model, tokenizer=None, source="random bert-base-uncased")
    frontend = EnglishFrontend(_tokenizer(tmp), synth.symbols)
    return frontend, bert, synth, symbol_table(synth.symbols)


def one_sentence(text: str, parts: tuple, *, use_bert: bool, seed: int) -> tuple[dict, float]:
    """Synthesise one sentence as the worker does; seconds per part and audio seconds."""
    frontend, bert, synth, symbol_ids = parts
    seconds = {}
    started = time.perf_counter()
    out = frontend(text)
    sequence = to_sequence(out, symbol_ids, language="EN")
    seconds["frontend"] = time.perf_counter() - started

    started = time.perf_counter()
    features = bert.extract_batch([(out.token_ids, sequence.word2ph)])[0] if use_bert else None
    seconds["bert"] = time.perf_counter() - started

    started = time.perf_counter()
    item = SynthesisItem(
        phones=np.asarray(sequence.phone_ids),
        tones=np.asarray(sequence.tone_ids),
        languages=np.asarray(sequence.language_ids),
        speaker_id=0,
        ja_bert=features,
        seed=seed,
    )
    audio = synth.synthesize([item])[0]
    seconds["network"] = time.perf_counter() - started
    SYNTHESISED[text] = (audio, synth.sample_rate)
    return seconds, len(audio) / synth.sample_rate


SYNTHESISED: dict[str, tuple[np.ndarray, int]] = {}
"""The last audio of each sentence, for the validation timing."""


def validation_seconds(sentences: list[str], tmp: Path) -> float:
    """Whisper time to transcribe every synthesised sentence, one at a time."""
    from harmonyspeech.audio import resample
    from harmonyspeech.config import FasterWhisperModelConfig
    from harmonyspeech.models.faster_whisper import FasterWhisperAdapter
    from harmonyspeech.models.types import TranscribeWindow
    from harmonyspeech.models.whisper_fixtures import EOT, build_whisper_model

    config = FasterWhisperModelConfig(
        name="whisper",
        family="faster-whisper",
        num_threads=torch.get_num_threads(),
        weights={"path": str(build_whisper_model(tmp / "whisper", size="tiny"))},
        options={
            "compute_type": "int8",
            "beam_size": 1,
            "max_new_tokens": 30,
            "suppress_tokens": [-1, EOT],
        },
    )
    adapter = FasterWhisperAdapter(config)
    adapter.load()
    windows = [
        TranscribeWindow(resample(audio, rate, 16000), language="en")
        for audio, rate in (SYNTHESISED[text] for text in sentences)
    ]
    adapter.infer_batch(windows[:1])  # warm-up
    started = time.perf_counter()
    for window in windows:
        adapter.infer_batch([window])
    return time.perf_counter() - started


def single_stream(
    sentences: list[str], parts: tuple, *, use_bert: bool, label: str, decoder: str = "float32"
) -> dict:
    totals = dict.fromkeys(PARTS, 0.0)
    audio_s = 0.0
    for index, text in enumerate(sentences):
        seconds, duration = one_sentence(text, parts, use_bert=use_bert, seed=index)
        audio_s += duration
        for part in PARTS:
            totals[part] += seconds[part]
    wall = sum(totals.values())
    return {
        "pass": label,
        "decoder": decoder,
        "bert": "on" if use_bert else "off (zeros)",
        "sentences": len(sentences),
        "audio_s": audio_s,
        "wall_s": wall,
        "x_realtime": audio_s / wall,
        **{f"{part}_%": 100 * totals[part] / wall for part in PARTS},
        **{f"{part}_ms_per_sentence": 1000 * totals[part] / len(sentences) for part in PARTS},
    }


def run(quick: bool = False) -> BenchResult:
    """``quick`` uses 4 sentences and skips the BERT-off rows."""
    threads = int(os.environ.get("HARMONYSPEECH_BENCH_THREADS", os.cpu_count() or 1))
    torch.set_num_threads(threads)
    retain_freed_memory()  # as the MeloTTS worker does
    sentences = SENTENCES[:4] if quick else SENTENCES
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        parts = build(Path(tmp))
        # Warm-up as the worker's load does: number speller, dictionary and neural G2P loaded.
        one_sentence(FRONTEND_WARM_UP, parts, use_bert=True, seed=0)
        rows = [
            single_stream(sentences, parts, use_bert=True, label="first (new shapes)"),
            single_stream(sentences, parts, use_bert=True, label="second (warm)"),
        ]
        if not quick:
            rows.append(single_stream(sentences, parts, use_bert=False, label="third (warm)"))
        # The checkpoint that build() wrote, with the decoder in bfloat16 (``dtype``): fast on
        # CPUs with native bf16 (AVX512-BF16, AMX), rounding differently from float32.
        half = MeloSynthesizer.from_checkpoint_dir(Path(tmp), dtype="bfloat16")
        half_parts = (*parts[:2], half, parts[3])
        for label in ("first (new shapes)", "second (warm)"):
            rows.append(
                single_stream(sentences, half_parts, use_bert=True, label=label, decoder="bfloat16")
            )
        validate_s = validation_seconds(sentences, Path(tmp))
    first, warm = rows[0], rows[1]
    summary = {
        "torch_threads": threads,
        "x_realtime_single_stream_new_shapes": first["x_realtime"],
        "x_realtime_single_stream_warm": warm["x_realtime"],
        "x_realtime_single_stream_bfloat16_decoder_new_shapes": rows[-2]["x_realtime"],
        "x_realtime_single_stream_bfloat16_decoder_warm": rows[-1]["x_realtime"],
        "target_x_realtime": 6.0,
        "validate_ms_per_sentence": 1000 * validate_s / len(sentences),
        "validation_overhead": validate_s / warm["wall_s"],
    }
    return BenchResult("tts_e2e", rows, summary)
