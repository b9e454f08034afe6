"""MeloTTS network throughput: our runtime against the unoptimised network, in one run.

Real-size architecture (the official English hyperparameters, 51.9 M parameters) with random
weights from ``build_melo_checkpoint(size="real")``, and synthetic sentences of 21-121 tokens
(blank-interspersed, as the frontend produces them) with 768-d BERT features. Durations come
from the random duration predictors (about 3-5 frames per token).

Rows, all on the same items and weights:

* the baseline, a plain batch-1 loop of the unoptimised network: upstream's own
  ``SynthesizerTrn`` (fetched by ``tests/unit/melo/fetch_reference.py``) under ``torch.no_grad``
  as upstream's ``TTS`` runs it, in a fresh plain process: without the environment our model
  processes give themselves (``MODEL_ENV_DEFAULTS``, which ``python -m benchmarks`` applies to
  its own process), so with oneDNN's default kernel cache, which upstream's loop overflows;
* in this process, with that environment (a kernel cache of 8,192), the same loop under
  ``no_grad`` and with autograd on (without the upstream cache: our network with unfolded
  weight norm, the default layout and autograd on), with glibc's default allocator settings;
* upstream again after the process took the allocator setting our model workers apply
  (``harmonyspeech.models.allocator``; it cannot be undone in-process, hence the order), to
  show how much of the gain that setting alone brings;
* our runtime item by item (batch 1), and batched 4, 16 and 64 items per call (items grouped
  by length, as the scheduler does; the batch-64 row runs the corpus four times over, with other
  seeds); on CPU the batched front half is followed by per-item decoding (the default), and one
  row shows the whole-batch masked decoder instead.

* our runtime batched 4 at a time with the decoder in bfloat16 (fast on CPUs with native
  bf16), with its largest difference from our float32 waveforms;
* our runtime batched 4 at a time over sentences of lengths it has not seen (4 tokens longer
  each), in one pass without the untimed one: what a server sees, where every request brings
  new lengths (lengths are bucketed on CPU so that oneDNN reuses its convolution kernels);
* two long sentences (301 and 601 tokens) item by item, decoded in one pass and in windows
  (``decoder_window``, the CPU default); their ``speedup`` is against the baseline's corpus.

Throughput is audio seconds per wall second (``x_realtime``; its inverse is the real-time
factor). Every variant but the unseen-lengths row runs its whole pass once untimed first, so
those rows are measured with the same caches (``bench_tts_e2e`` compares first and repeated
passes over its sentences). Also reported: the largest difference between our waveforms and
upstream's (same seeds), and between batched and batch-1 waveforms.

Run: ``python -m benchmarks melo [--quick]`` (or ``make bench`` for all).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import BenchResult
from harmonyspeech.models.allocator import retain_freed_memory
from harmonyspeech.models.melo import MeloSynthesizer, SynthesisItem, build_melo_checkpoint
from harmonyspeech.models.melo.checkpoint import (
    CHECKPOINT_FILE,
    load_hparams,
    network_from_state_dict,
    read_state_dict,
)
from harmonyspeech.models.melo.network import PerItemNoise
from harmonyspeech.models.process_env import MODEL_ENV_DEFAULTS, OVERRIDDEN_BY

TOKENS_FULL = tuple(range(21, 122, 20)) + tuple(range(27, 122, 10))
TOKENS_QUICK = (21, 61, 101, 41)
LONG_TOKENS = (301, 601)
"""Long sentences (about 48 s of audio together) for the windowed-decoder rows."""
SAMPLE_RATE = 44100
HOP = 512

Synthesize = Callable[[Sequence[SynthesisItem]], list[np.ndarray]]


def corpus(token_counts: Sequence[int]) -> list[SynthesisItem]:
    """English-like items: blanks at even positions, EN tones and language id, BERT features."""
    items = []
    for index, n in enumerate(token_counts):
        rng = np.random.default_rng(index)
        phones, tones = rng.integers(1, 219, n), rng.integers(7, 11, n)
        languages = np.full(n, 2)
        for array in (phones, tones, languages):
            array[::2] = 0
        items.append(
            SynthesisItem(
                phones=phones,
                tones=tones,
                languages=languages,
                speaker_id=index % 5,
                ja_bert=rng.normal(0.0, 0.5, (768, n)).astype(np.float32),
                seed=1000 + index,
            )
        )
    return items


def measure(
    name: str, synthesize: Synthesize, items, batch: int, *, warm: bool = True
) -> tuple[dict, list]:
    """One timed pass over ``items`` in calls of ``batch``, after the same pass untimed
    (unless not ``warm``)."""
    groups = _length_groups(items, batch)
    for group in groups if warm else ():
        synthesize(group)
    started = time.perf_counter()
    outputs: dict[int, np.ndarray] = {}
    for group in groups:
        for item, audio in zip(group, synthesize(group), strict=True):
            outputs[id(item)] = audio
    wall = time.perf_counter() - started
    audio = [outputs[id(item)] for item in items]
    audio_s = sum(len(a) for a in audio) / SAMPLE_RATE
    row = {
        "variant": name,
        "batch": batch,
        "items": len(items),
        "audio_s": audio_s,
        "wall_s": wall,
        "x_realtime": audio_s / wall,
        "rtf": wall / audio_s,
    }
    print(f"  {name}, batch {batch}: {row['x_realtime']:.3g}x real time", flush=True)
    return row, audio


def _length_groups(items: Sequence[SynthesisItem], size: int) -> list[list[SynthesisItem]]:
    ordered = sorted(items, key=lambda item: item.n_tokens)
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def upstream_runner(checkpoint: Path, *, autograd: bool, device: str = "cpu") -> Synthesize | None:
    """Upstream ``SynthesizerTrn.infer`` item by item, as ``TTS.tts_to_file`` calls it."""
    from tests.unit.melo.fetch_reference import (
        DEFAULT_DEST,
        is_fetched,
        reference_infer,
        reference_network,
    )

    if not is_fetched(DEFAULT_DEST):
        return None
    network = reference_network(checkpoint).to(device)

    def synthesize(items: Sequence[SynthesisItem]) -> list[np.ndarray]:
        with torch.set_grad_enabled(autograd):
            return [reference_infer(network, item, device) for item in items]

    return synthesize


PLAIN_PROCESS_TIMEOUT_S = 1800


def plain_process_row(checkpoint: Path, quick: bool) -> dict | None:
    """Upstream's ``no_grad`` loop measured in a fresh process without ``MODEL_ENV_DEFAULTS``
    (nor the variables they stand in for): what running MeloTTS as it is gives. None without
    the upstream cache, or when that process fails (its errors go to this one's stderr)."""
    ours = set(MODEL_ENV_DEFAULTS) | {
        other for others in OVERRIDDEN_BY.values() for other in others
    }
    environ = {k: v for k, v in os.environ.items() if k not in ours}
    probe = (
        "import json, sys; from benchmarks.bench_melo_network import plain_upstream; "
        "print(json.dumps(plain_upstream(sys.argv[1], sys.argv[2] == 'quick')))"
    )
    argv = [sys.executable, "-c", probe, str(checkpoint), "quick" if quick else "full"]
    root = Path(__file__).resolve().parents[1]
    try:
        done = subprocess.run(
            argv,
            env=environ,
            cwd=root,
            stdout=subprocess.PIPE,
            text=True,
            check=True,
            timeout=PLAIN_PROCESS_TIMEOUT_S,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        print(f"  upstream in a plain process: no row ({exc})", flush=True)
        return None
    row = json.loads(done.stdout.splitlines()[-1])
    print(f"  {row['variant']}, batch 1: {row['x_realtime']:.3g}x real time", flush=True)
    return row


def plain_upstream(checkpoint: str, quick: bool) -> dict | None:
    """The row of :func:`plain_process_row`, run inside that process."""
    torch.set_num_threads(_threads())
    upstream = upstream_runner(Path(checkpoint), autograd=False)
    if upstream is None:
        return None
    items = corpus(TOKENS_QUICK if quick else TOKENS_FULL)
    name = "upstream SynthesizerTrn, no_grad, plain process"
    return measure(name, upstream, items, 1)[0]


def _threads() -> int:
    return int(os.environ.get("HARMONYSPEECH_BENCH_THREADS", os.cpu_count() or 1))


def unoptimised_runner(checkpoint: Path, device: str = "cpu") -> Synthesize:
    """Our network as loaded, unprepared: weight norm unfolded, default layout, autograd on."""
    hparams = load_hparams(checkpoint)
    network = network_from_state_dict(hparams, read_state_dict(checkpoint / CHECKPOINT_FILE))
    network.to(device).eval()
    collate = MeloSynthesizer(network, hparams, decoder_batch_size=1)._collate

    def synthesize(items: Sequence[SynthesisItem]) -> list[np.ndarray]:
        out = []
        for item in items:
            result = network.infer(collate([item]), PerItemNoise([item.seed]))
            frames = int(result.frames[0])
            out.append(result.audio[0, : frames * HOP].detach().cpu().numpy())
        return out

    return synthesize


def run(quick: bool = False) -> BenchResult:
    """Run the benchmark; ``quick`` uses 4 items and skips the autograd and batch-16 rows.

    ``HARMONYSPEECH_BENCH_DEVICE=cuda`` runs the GPU rows instead (see :func:`_gpu_rows`).
    """
    threads = _threads()
    device = os.environ.get("HARMONYSPEECH_BENCH_DEVICE", "cpu")
    torch.set_num_threads(threads)
    items = corpus(TOKENS_QUICK if quick else TOKENS_FULL)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = build_melo_checkpoint(Path(tmp), size="real", seed=0)
        if device == "cpu":
            rows, outputs = _cpu_rows(checkpoint, items, quick)
        else:
            rows, outputs = _gpu_rows(checkpoint, items, quick, device)
    result = _result(rows, outputs, threads, quick)
    if device != "cpu":
        result.name = f"melo_network_{torch.device(device).type}"
        result.summary["device"] = torch.cuda.get_device_name(device)
    return result


def _cpu_rows(checkpoint: Path, items, quick: bool) -> tuple[list[dict], dict[str, list]]:
    plain = plain_process_row(checkpoint, quick)
    rows, outputs = _baselines(checkpoint, items, quick)
    if plain is not None:
        rows.insert(0, plain)
    retain_freed_memory()  # as our model workers do, from here on (see the module docstring)
    upstream = upstream_runner(checkpoint, autograd=False)
    if upstream is not None:
        name = "upstream SynthesizerTrn, no_grad, our allocator setting"
        rows.append(measure(name, upstream, items, 1)[0])
    synth = MeloSynthesizer.from_checkpoint_dir(checkpoint)
    for batch in (1, 4) if quick else (1, 4, 16):
        name = "ours, batch-1 loop" if batch == 1 else "ours, batched"
        row, audio = measure(name, synth.synthesize, items, batch)
        rows.append(row)
        outputs[f"ours-{batch}"] = audio
    # Half precision is exact across batches too (the decoder runs per item), but rounds
    # differently from float32; fast only on CPUs with native bf16 (AVX512-BF16, AMX).
    half = MeloSynthesizer.from_checkpoint_dir(checkpoint, dtype="bfloat16")
    row, audio = measure("ours, batched, bfloat16 decoder", half.synthesize, items, 4)
    row["max_abs_diff_vs_float32_batch1"] = _max_diff(audio, outputs["ours-1"])
    rows.append(row)
    if not quick:
        # On CPU the default decodes items one by one; this row shows why.
        masked = MeloSynthesizer.from_checkpoint_dir(checkpoint, decoder_batch_size=None)
        row, outputs["ours-masked"] = measure(
            "ours, batched, whole-batch masked decoder", masked.synthesize, items, 4
        )
        rows.append(row)
        rows.append(measure("ours, batched", synth.synthesize, _copies(items, 64), 64)[0])
        unseen = corpus([n + 4 for n in TOKENS_FULL])
        name = "ours, batched, unseen lengths, first pass"
        rows.append(measure(name, synth.synthesize, unseen, 4, warm=False)[0])
        rows.extend(_long_rows(checkpoint, synth))
    return rows, outputs


def _long_rows(checkpoint: Path, windowed: MeloSynthesizer) -> list[dict]:
    """Long sentences decoded in one pass and in windows (the CPU default), item by item."""
    items = corpus(LONG_TOKENS)
    one_pass = MeloSynthesizer.from_checkpoint_dir(checkpoint, decoder_window=None)
    rows = [
        measure("long items: ours, one-pass decoder", one_pass.synthesize, items, 1)[0],
        measure("long items: ours, windowed decoder", windowed.synthesize, items, 1)[0],
    ]
    rows[1]["windowed_over_one_pass"] = rows[1]["x_realtime"] / rows[0]["x_realtime"]
    return rows


GPU_BATCHES = (16, 64, 256)
GPU_VARIANTS: tuple[tuple[str, dict, bool], ...] = (
    ("float32, whole-batch decoder", dict(decoder_batch_size=None), False),
    ("bfloat16", dict(dtype="bfloat16"), False),
    ("float16", dict(dtype="float16"), False),
    ("float16, decoder groups of 32", dict(dtype="float16", decoder_batch_size=32), False),
    ("float16, decoder groups of 128", dict(dtype="float16", decoder_batch_size=128), False),
    ("float16, channels-first", dict(dtype="float16", channels_last=False), False),
    (
        "float16, bucketed lengths, cuDNN autotuned",
        dict(dtype="float16", bucket_lengths=True),
        True,
    ),
)
"""Settings compared with the defaults (float32, decoder groups of ``GPU_DECODER_GROUP``,
channels-last in half precision) at the largest batch on a GPU; the best also runs 1024. The
third field runs the variant with ``torch.backends.cudnn.benchmark`` on: cuDNN then times its
algorithms for every new input shape and keeps the fastest, which pays only where shapes
repeat, hence with bucketed lengths (here the untimed pass tunes the shapes the timed pass
meets; a server would meet each bucket's shapes once per group size before they repeat)."""


def _gpu_rows(
    checkpoint: Path, items, quick: bool, device: str
) -> tuple[list[dict], dict[str, list]]:
    """Upstream and ours item by item, ours batched up to 256 items (the corpus copied with
    other seeds) with the defaults, then the :data:`GPU_VARIANTS` at 256 items, the best of
    them at 1024 items, and float32 with cuDNN's TF32 (which the runtime turns off). Every row
    records the peak GPU memory and its largest difference from our float32 batch-1 waveforms
    (same seeds; ``inf`` when an item's length differs)."""
    rows, outputs = _baselines(checkpoint, items, quick=True, device=device)
    upstream = upstream_runner(checkpoint, autograd=False, device=device)
    if upstream is not None:
        # Timed as upstream runs (cuDNN's TF32 on, PyTorch's default); compared without TF32,
        # as ours runs, since TF32 moves items' lengths (see the TF32 row).
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            outputs["baseline"] = upstream(items)
        del upstream
    retain_freed_memory()
    synth = MeloSynthesizer.from_checkpoint_dir(checkpoint, device=device)
    row, outputs["ours-1"] = measure("ours, batch-1 loop", synth.synthesize, items, 1)
    rows.append(row)
    batches = GPU_BATCHES[:2] if quick else GPU_BATCHES
    for batch in batches:
        row, audio = _gpu_measure("ours, batched", synth, items, batch, outputs["ours-1"])
        rows.append(row)
        if audio:
            outputs[f"ours-{batch}"] = audio[: len(items)]
    batch = batches[-1]  # the settings below are compared at the largest batch
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=True):
        name = "ours, batched, float32 with cuDNN TF32"
        rows.append(_gpu_measure(name, synth, items, batch, outputs["ours-1"])[0])
    del synth
    variants = []
    for label, options, autotune in GPU_VARIANTS:
        variant = MeloSynthesizer.from_checkpoint_dir(checkpoint, device=device, **options)
        with _cudnn_autotuned(autotune):
            name = f"ours, batched, {label}"
            row = _gpu_measure(name, variant, items, batch, outputs["ours-1"])[0]
        variants.append((row["x_realtime"], label, options, autotune))
        rows.append(row)
    _, label, options, autotune = max(variants, key=lambda variant: variant[0])
    best = MeloSynthesizer.from_checkpoint_dir(checkpoint, device=device, **options)
    with _cudnn_autotuned(autotune):
        name = f"ours, batched, {label}"
        rows.append(_gpu_measure(name, best, items, 4 * batch, outputs["ours-1"])[0])
    return rows, outputs


def _cudnn_autotuned(on: bool) -> contextlib.AbstractContextManager:
    """cuDNN's per-shape autotuning on, TF32 still off (the runtime's setting)."""
    if not on:
        return contextlib.nullcontext()
    return torch.backends.cudnn.flags(enabled=True, benchmark=True, allow_tf32=False)


def _gpu_measure(
    name: str, synth: MeloSynthesizer, items, batch: int, reference: list[np.ndarray]
) -> tuple[dict, list]:
    """:func:`measure` over the corpus copied to ``batch`` items, with the peak GPU memory and
    the largest difference of the first copy from ``reference``."""
    torch.cuda.reset_peak_memory_stats()
    try:
        row, audio = measure(name, synth.synthesize, _copies(items, batch), batch)
    except torch.cuda.OutOfMemoryError as exc:
        torch.cuda.empty_cache()
        error = str(exc).splitlines()[0]
        return {"variant": name, "batch": batch, "x_realtime": 0.0, "error": error}, []
    row["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    row["max_abs_diff_vs_float32_batch1"] = _max_diff(audio[: len(items)], reference)
    return row, audio


def _copies(items: Sequence[SynthesisItem], at_least: int) -> list[SynthesisItem]:
    """The corpus repeated (other seeds) until it holds ``at_least`` items."""
    copies = -(-at_least // len(items))
    return [
        dataclasses.replace(item, seed=item.seed + 100 * copy)
        for copy in range(copies)
        for item in items
    ]


def _baselines(
    checkpoint: Path, items, quick: bool, device: str = "cpu"
) -> tuple[list[dict], dict[str, list]]:
    rows, outputs = [], {}
    upstream = upstream_runner(checkpoint, autograd=False, device=device)
    if upstream is not None:
        row, outputs["baseline"] = measure("upstream SynthesizerTrn, no_grad", upstream, items, 1)
        rows.append(row)
        if not quick:
            with_grad = upstream_runner(checkpoint, autograd=True)
            rows.append(measure("upstream SynthesizerTrn, autograd", with_grad, items, 1)[0])
    else:
        name = "ours unoptimised (unfolded WN, autograd)"
        runner = unoptimised_runner(checkpoint, device)
        row, outputs["baseline"] = measure(name, runner, items, 1)
        rows.append(row)
    return rows, outputs


def _result(rows: list[dict], outputs: dict[str, list], threads: int, quick: bool) -> BenchResult:
    baseline = rows[0]["x_realtime"]
    for row in rows:
        row["speedup"] = row["x_realtime"] / baseline
    # Half-precision rows round differently from float32, and cuDNN's TF32 moves lengths, so
    # the headline figures come from exact float32 rows; half precision has its own.
    half = [row for row in rows if "float16" in row["variant"]]
    ours = [
        row
        for row in rows
        if row["variant"].startswith("ours") and row not in half and "TF32" not in row["variant"]
    ]
    single = outputs["ours-1"]
    summary = {
        "baseline": rows[0]["variant"],
        "threads": threads,
        "best_x_realtime": max(row["x_realtime"] for row in ours),
        "best_speedup_vs_baseline": max(row["speedup"] for row in ours),
        "best_speedup_vs_our_batch1": max(row["x_realtime"] for row in ours)
        / ours[0]["x_realtime"],
        "batch1_speedup_vs_baseline": ours[0]["speedup"],
        "max_abs_diff_vs_baseline": _max_diff(single, outputs["baseline"]),
        "max_abs_diff_batched_vs_batch1": max(
            _max_diff(outputs[key], single) for key in outputs if key.startswith("ours")
        ),
        "quick": quick,
    }
    for row in rows:
        if "windowed_over_one_pass" in row:
            summary["long_items_windowed_over_one_pass"] = row["windowed_over_one_pass"]
    if half:
        summary["best_half_precision_x_realtime"] = max(row["x_realtime"] for row in half)
        summary["best_half_precision_speedup_vs_baseline"] = max(row["speedup"] for row in half)
    for row in rows:
        if row["variant"].endswith("autograd"):
            best = max(r["x_realtime"] for r in ours)
            summary["best_speedup_vs_autograd_baseline"] = best / row["x_realtime"]
    if rows[0]["variant"].endswith("plain process"):
        # Against upstream with the same environment as ours (the row after the plain one).
        same = rows[1]["x_realtime"]
        summary["best_speedup_vs_upstream_in_this_process"] = summary["best_x_realtime"] / same
        if half:
            best_half = summary["best_half_precision_x_realtime"]
            summary["best_half_precision_speedup_vs_upstream_in_this_process"] = best_half / same
    return BenchResult(name="melo_network", rows=rows, summary=summary)


def _max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    if any(x.shape != y.shape for x, y in zip(a, b, strict=True)):
        return float("inf")
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))
