"""Counters a worker keeps about its batches, exposed through ``/v1/stats``-style calls."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal, get_args

from harmonyspeech.engine.items import WorkItem

Outcome = Literal["failed", "rejected", "cancelled", "expired"]
"""What became of an item that produced no result."""


class WorkerStats:
    """Batch statistics of one worker. Thread-safe: written by the inference thread and the
    event loop (cancellations), read by the event loop. Write through the methods."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.batch_sizes: Counter[int] = Counter()
        self.items = 0
        self.failed = 0  # items the model failed on (a 5xx for their request)
        self.rejected = 0  # items refused as invalid input (a 4xx: the request's mistake)
        self.cancelled = 0
        self.expired = 0
        self.busy_s = 0.0
        self.max_queue_depth = 0
        self._useful_cost = 0.0
        self._padded_cost = 0.0

    def record_batch(self, items: Sequence[WorkItem], seconds: float) -> None:
        costs = [item.cost for item in items]
        with self._lock:
            self.batch_sizes[len(items)] += 1
            self.items += len(items)
            self.busy_s += seconds
            self._useful_cost += sum(costs)
            self._padded_cost += len(costs) * max(costs)

    def count(self, outcome: Outcome, n: int = 1) -> None:
        """Add ``n`` items to the counter ``outcome``, under the lock: the inference thread and
        the event loop both count."""
        if outcome not in get_args(Outcome):
            raise ValueError(f"unknown outcome {outcome!r}")
        with self._lock:
            setattr(self, outcome, getattr(self, outcome) + n)

    def record_queue_depth(self, depth: int) -> None:
        with self._lock:
            self.max_queue_depth = max(self.max_queue_depth, depth)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy of the counters."""
        with self._lock:
            batches = sum(self.batch_sizes.values())
            return {
                "batches": batches,
                "items": self.items,
                "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
                "max_batch_size_seen": max(self.batch_sizes, default=0),
                "mean_batch_size": self.items / batches if batches else 0.0,
                "padding_efficiency": (
                    self._useful_cost / self._padded_cost if self._padded_cost else 1.0
                ),
                "failed": self.failed,
                "rejected": self.rejected,
                "cancelled": self.cancelled,
                "expired": self.expired,
                "busy_s": round(self.busy_s, 6),
                "max_queue_depth": self.max_queue_depth,
            }
