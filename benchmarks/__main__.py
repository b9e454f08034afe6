"""``python -m benchmarks [NAME ...] [--quick]``: run benchmarks, print tables, write JSON."""

from __future__ import annotations

import argparse
import importlib

from harmonyspeech.models.process_env import apply_model_env_defaults

BENCHMARKS = {
    "vad": "benchmarks.bench_vad",
    "whisper": "benchmarks.bench_whisper",
    "frontend": "benchmarks.bench_frontend",
    "melo": "benchmarks.bench_melo_network",
    "tts": "benchmarks.bench_tts_e2e",
    "speech_http": "benchmarks.bench_speech_http",
    "batch": "benchmarks.bench_batch",
    "cloning": "benchmarks.bench_cloning",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="smaller inputs, one repeat")
    args = parser.parse_args()
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    # As our model processes run (before any benchmark imports torch): a benchmark that
    # needs a plain process for a baseline starts one (see bench_melo_network).
    apply_model_env_defaults()
    for name in args.names or list(BENCHMARKS):
        result = importlib.import_module(BENCHMARKS[name]).run(quick=args.quick)
        path = result.save()
        print(result.table())
        print(f"  -> {path}\n")


if __name__ == "__main__":
    main()
