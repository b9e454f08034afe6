"""Shared benchmark plumbing: timing, results files and tables."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"


@dataclass
class BenchResult:
    """One benchmark's figures: rows for the table plus the headline ratios."""

    name: str
    rows: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)

    def save(self) -> Path:
        RESULTS_DIR.mkdir(exist_ok=True)
        path = RESULTS_DIR / f"{self.name}.json"
        document = {
            "name": self.name,
            "machine": machine(),
            "summary": self.summary,
            "rows": self.rows,
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
        return path

    def table(self) -> str:
        if not self.rows:
            return f"{self.name}: no rows"
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        cells = [[_fmt(row.get(c)) for c in columns] for row in self.rows]
        widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
        line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
        body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
        summary = [f"  {k}: {_fmt(v)}" for k, v in self.summary.items()]
        return "\n".join([f"== {self.name}", line, "-" * len(line), *body, *summary])


def best_of(repeats: int, run: Callable[[], float]) -> float:
    """Minimum of several timings: the least disturbed run (as faster-whisper's benchmarks)."""
    return min(run() for _ in range(repeats))


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def machine() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)
