"""English frontend and BERT feature cost per sentence.

* Frontend: normalise + tokenize + G2P (lexicon and neural OOV G2P, caches cleared every round)
  on realistic sentences, split by stage.
* BERT: the real ``bert-base-uncased`` architecture (``BertConfig()`` defaults, 110 M parameters)
  with random weights built in memory, fed with the frontend's token ids and word2ph; batch 1
  (one call per sentence) versus one batch of 8, in fp32 and under bf16 autocast. Torch threads
  are whatever the caller set.

``python -m benchmarks.bench_frontend [--quick]`` prints the table and writes
``benchmarks/results/frontend.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import BenchResult, best_of, timed
from harmonyspeech.models.bert_fixtures import DEFAULT_WORDS, write_vocab
from harmonyspeech.text import (
    EnglishFrontend,
    WordPieceTokenizer,
    neural_g2p,
    normalize_english,
    split_camel_case,
    symbol_table,
    to_sequence,
)

SYMBOLS_JSON = Path(__file__).resolve().parents[1] / "harmonyspeech/models/melo/symbols.json"

SENTENCES = [
    "The meeting with Dr. Patel has been moved to 3:45pm on Thursday, March 21st.",
    "Our quarterly revenue grew by 12.5 percent to $4,250,000, beating every estimate.",
    "Please remember to bring your passport, two photos and the signed application form.",
    "In 1969, Apollo 11 landed on the Moon and Neil Armstrong took his first steps.",
    "I can't believe it's already snowing; we'll need to find the winter jackets tonight.",
    "The new firmware update improves battery life and fixes the Bluetooth pairing bug.",
    "Kubernetes schedules containers across nodes, while Prometheus scrapes their metrics.",
    'She whispered, "Don\'t worry, everything will be fine," and closed the door gently.',
    "Turn left after the second traffic light, then continue straight for about 500 meters.",
    "The museum opens at 9:30am and tickets cost £12.50 for adults and £6 for children.",
    "Mr. Okonkwo's presentation on renewable energy was the highlight of the conference.",
    "If the temperature drops below freezing, the pipes in the old cottage might burst.",
]


def _tokenizer(directory: Path) -> WordPieceTokenizer:
    # Whole words for every benchmark word, as bert-base-uncased has for common English, so that
    # token counts are realistic.
    words = {w.strip(".,;:!?\"'").lower() for s in SENTENCES for w in s.split()}
    return WordPieceTokenizer.from_vocab(
        write_vocab(directory / "vocab.txt", [*DEFAULT_WORDS, *words])
    )


def _per_sentence_ms(seconds: float, count: int) -> float:
    return 1000 * seconds / count


def frontend_rows(frontend: EnglishFrontend, sentences: list[str], repeats: int) -> list[dict]:
    def cold_caches() -> None:
        neural_g2p.clear_cache()  # every round pays for its OOV words

    normalized = [normalize_english(split_camel_case(s)) for s in sentences]
    tokenized = [frontend.tokenizer.tokenize(n) for n in normalized]

    def run_all() -> None:
        cold_caches()
        for s in sentences:
            frontend(s)

    def g2p_only() -> None:
        cold_caches()
        for tokens in tokenized:
            frontend.phonemize(tokens)

    stages = {
        "normalise": lambda: [normalize_english(split_camel_case(s)) for s in sentences],
        "tokenize": lambda: [frontend.tokenizer.tokenize(n) for n in normalized],
        "g2p": g2p_only,
        "frontend total": run_all,
    }
    n = len(sentences)
    return [
        {
            "part": part,
            "batch": 1,
            "dtype": "-",
            "ms_per_sentence": _per_sentence_ms(best_of(repeats, lambda f=fn: timed(f)), n),
        }
        for part, fn in stages.items()
    ]


def bert_rows(items: list, repeats: int) -> tuple[list[dict], dict[str, Any]]:
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from harmonyspeech.models.bert import BertFeatureExtractor

    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig()).eval().requires_grad_(False)
    extractor = BertFeatureExtractor(model, tokenizer=None, source="random bert-base-uncased")
    rows, per_sentence = [], {}
    for autocast in (False, True):
        dtype = "bf16 autocast" if autocast else "fp32"
        extractor.extract_batch(items, autocast_bf16=autocast)  # warm-up
        runs = {
            1: lambda a=autocast: [extractor.extract(*item, autocast_bf16=a) for item in items],
            len(items): lambda a=autocast: extractor.extract_batch(items, autocast_bf16=a),
        }
        for batch, fn in runs.items():
            ms = _per_sentence_ms(best_of(repeats, lambda f=fn: timed(f)), len(items))
            per_sentence[(dtype, batch)] = ms
            rows.append({"part": "bert", "batch": batch, "dtype": dtype, "ms_per_sentence": ms})
    fp32_1, fp32_n = per_sentence[("fp32", 1)], per_sentence[("fp32", len(items))]
    summary = {
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # bf16 needs AVX512-BF16/AMX
        "bert_batch_speedup_fp32": fp32_1 / fp32_n,
        "bert_bf16_speedup_batch": fp32_n / per_sentence[("bf16 autocast", len(items))],
        **_bf16_error(extractor, items),
    }
    return rows, summary


def _bf16_error(extractor: Any, items: list) -> dict[str, float]:
    exact = np.concatenate(extractor.extract_batch(items), axis=1)
    approx = np.concatenate(extractor.extract_batch(items, autocast_bf16=True), axis=1)
    error = approx - exact
    return {
        "bf16_max_abs_diff": float(np.abs(error).max()),
        "bf16_relative_rms_diff": float(np.sqrt((error**2).mean() / (exact**2).mean())),
    }


def run(quick: bool = False) -> BenchResult:
    """Measure the frontend and BERT features; ``quick`` uses fewer sentences and repeats."""
    import json

    sentences = SENTENCES[:8]
    repeats = 1 if quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        symbols = json.loads(SYMBOLS_JSON.read_text(encoding="utf-8"))
        frontend = EnglishFrontend(_tokenizer(Path(tmp)), symbols)
        started = time.perf_counter()
        frontend("Warm up 1.")  # imports inflect, loads the lexicon and the G2P weights
        cold_start_s = time.perf_counter() - started
        rows = frontend_rows(frontend, sentences if quick else SENTENCES, repeats)
        outputs = [frontend(s) for s in sentences]
    ids = symbol_table(symbols)
    items = [(o.token_ids, to_sequence(o, ids).word2ph) for o in outputs]
    more_rows, summary = bert_rows(items, 1 if quick else 3)
    summary = {
        "frontend_cold_start_s": cold_start_s,
        "mean_bert_tokens": sum(len(i) for i, _ in items) / len(items),
        "mean_phones_with_blanks": sum(sum(w) for _, w in items) / len(items),
        **summary,
    }
    return BenchResult(name="frontend", rows=rows + more_rows, summary=summary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sentences and repeats")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = run(quick=args.quick)
    path = result.save()
    print(result.table())
    print(f"  -> {path}")


if __name__ == "__main__":
    main()
