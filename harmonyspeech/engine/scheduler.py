"""The scheduler: which queued items form the next batch (DESIGN.md decision 2).

It is pure: no threads, no I/O, no models; time comes from an injected clock. The worker (or a test,
or a benchmark) owns the loop and calls it. One scheduler runs per model instance, in every Serve
replica and in-process alike.

Batch formation:
    1. The most urgent item (highest class, then earliest deadline, then first in) anchors the
       batch, so nothing waits behind less urgent work.
    2. The rest is filled from a window of the next ``max_batch_size * lookahead`` items in
       urgency order, more urgent classes first and, within a class, items closest in cost to the
       anchor first (less padding). Within a class, ties keep arrival order.
    3. A batch holds at most ``max_batch_size`` items and its padded cost
       (items × costliest item) stays within ``max_batch_cost``; an item over budget on its own
       still runs, alone.
    4. A batch anchored by a ``FIRST_CHUNK`` item holds only ``FIRST_CHUNK`` items (first items
       of many requests): a batch's results all arrive when the whole batch is done, so filling
       it with the rest of those requests would delay their first audio by that much work.
    5. First chunks go ahead of the rest of the requests already under way only while that
       costs none of them its deadline: once the earliest-deadline ``INTERACTIVE`` item would
       miss it behind the queued first chunks (at the timed seconds per unit of cost), it
       anchors the batch. Under a load past capacity, streams under way are finished rather
       than cut off for new ones.

Rules 1-4 overtake an item at position p in urgency order at most p times, because every batch
contains the current anchor; rule 5 lets the rest of a request under way overtake first chunks
only when it would otherwise miss its deadline. A batch is sent when it is full (by size or
cost) or when the oldest queued item has waited ``max_wait_ms``.

Admission: new work is refused when the queue is at ``max_queue``, and (``refuse_late_work``)
when it could not finish within ``ADMISSION_HEADROOM`` of its time to its deadline behind the
work queued ahead of its class (live work for live items, everything for batch items), at the
seconds per unit of cost that recent batches took (``observe_batch``): a fast 503 the client can
retry, instead of a 504 after its whole deadline spent waiting, and work that fits keeps its
deadlines.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

from harmonyspeech.config import BatchingPolicy
from harmonyspeech.engine.items import Priority, WorkItem
from harmonyspeech.errors import OverloadedError

Clock = Callable[[], float]

RATE_SMOOTHING = 0.3
"""Weight of the newest batch in the moving average of seconds per unit of cost."""
MIN_BATCHES_OBSERVED = 3
"""Half-full batches observed before admission trusts their average (the first ones include
warm-up)."""
MAX_RETRY_AFTER_S = 60.0
"""Longest ``Retry-After`` a late-work refusal suggests."""
ADMISSION_HEADROOM = 0.8
"""Share of its time to the deadline that new work may expect to wait: the estimate runs low
when other models share the cores, and first sentences of later requests go ahead of it (a burst
on 2 cores drained 12 % slower than estimated, and a fifth of the admitted streams missed their
deadline without headroom)."""


class Scheduler:
    """Queue and batching policy for one model instance.

    Args:
        policy: Batch size, cost budget, wait time and queue bound.
        clock: Returns the current time in seconds; ``time.monotonic`` by default.
    """

    def __init__(self, policy: BatchingPolicy, clock: Clock = time.monotonic):
        self.policy = policy
        self._clock = clock
        self._queue: dict[int, WorkItem] = {}
        self._live = 0  # queued items of every class but BATCH
        self._live_cost = 0.0
        self._total_cost = 0.0
        self._seq = itertools.count()
        self._seconds_per_cost: float | None = None  # a moving average of recent batches
        self._batches_observed = 0

    def __len__(self) -> int:
        return len(self._queue)

    def __contains__(self, item_id: int) -> bool:
        return item_id in self._queue

    def submit(self, item: WorkItem, *, admitted: bool = False) -> None:
        """Queue an item.

        Live work (any class but ``BATCH``) is refused once ``max_queue`` live items wait:
        batch work never takes its room, so a batch job cannot lock live clients out. Batch
        work only fills what is free: it is refused once ``max_queue`` items of any class wait.

        Args:
            item: The work item.
            admitted: The item belongs to a request already under way, which the bound must not
                cut off: it is queued even past ``max_queue`` (and counts towards it, so new
                requests are refused until the queue is back under the bound).

        Raises:
            OverloadedError: The queue is full for the item's class (and it is not
                ``admitted``).
        """
        waiting = len(self._queue) if item.priority is Priority.BATCH else self._live
        if not admitted and waiting >= self.policy.max_queue:
            raise OverloadedError(
                f"queue full ({self.policy.max_queue} items waiting); retry shortly",
                retry_after_s=self._retry_after(),
            )
        if not admitted and self.policy.refuse_late_work:
            self._refuse_if_late(item)
        item.arrival = self._clock()
        item.seq = next(self._seq)
        self._queue[item.id] = item
        self._total_cost += item.cost
        if item.priority is not Priority.BATCH:
            self._live += 1
            self._live_cost += item.cost

    def observe_batch(self, items: list[WorkItem], seconds: float) -> None:
        """Record how long a batch of ``items`` took. Batches at least half full give the time
        per unit of cost that admission expects of a long queue (a moving average): a queue
        long enough to make work late runs in full batches, which on a GPU take far less per
        item than the small batches of a quiet server."""
        cost = sum(item.cost for item in items)
        if cost <= 0 or seconds < 0 or not self._half_full(items):
            return
        rate = seconds / cost
        previous = self._seconds_per_cost
        self._seconds_per_cost = (
            rate if previous is None else (1 - RATE_SMOOTHING) * previous + RATE_SMOOTHING * rate
        )
        self._batches_observed += 1

    def _half_full(self, items: list[WorkItem]) -> bool:
        budget = self.policy.max_batch_cost
        by_cost = budget is not None and 2 * padded_cost(items) >= budget
        return by_cost or 2 * len(items) >= self.policy.max_batch_size

    def _rate(self) -> float | None:
        """Seconds per unit of cost of well-filled batches; None until enough were observed to
        tell (a server that never filled its batches was never overloaded)."""
        if self._batches_observed < MIN_BATCHES_OBSERVED:
            return None
        return self._seconds_per_cost

    def expected_wait_s(self, item: WorkItem) -> float | None:
        """Seconds until ``item`` would be done behind the queued work of its class and the
        classes before it; None while the rate is unknown."""
        rate = self._rate()
        if rate is None:
            return None
        ahead = self._total_cost if item.priority is Priority.BATCH else self._live_cost
        return (ahead + item.cost) * rate

    def _refuse_if_late(self, item: WorkItem) -> None:
        if item.deadline is None:
            return
        wait = self.expected_wait_s(item)
        left = item.deadline - self._clock()
        if wait is None or wait <= ADMISSION_HEADROOM * left:
            return
        raise OverloadedError(
            f"the queue holds about {wait:.0f} s of work, and this request's deadline is in "
            f"{max(left, 0.0):.0f} s; retry shortly",
            retry_after_s=min(max(1.0, wait - ADMISSION_HEADROOM * left), MAX_RETRY_AFTER_S),
        )

    def cancel(self, item_id: int) -> WorkItem | None:
        """Remove a waiting item; returns it, or None if it already left the queue."""
        item = self._queue.get(item_id)
        if item is not None:
            self._remove(item)
        return item

    def expire(self) -> list[WorkItem]:
        """Remove and return every item whose deadline has passed."""
        now = self._clock()
        expired = [i for i in self._queue.values() if i.deadline is not None and i.deadline <= now]
        for item in expired:
            self._remove(item)
        return expired

    def _remove(self, item: WorkItem) -> None:
        del self._queue[item.id]
        self._total_cost -= item.cost
        if item.priority is not Priority.BATCH:
            self._live -= 1
            self._live_cost -= item.cost
        if not self._queue:
            # Sums of floats drift: an empty queue holds no work.
            self._total_cost = self._live_cost = 0.0

    def ready(self) -> bool:
        """True when a batch should be sent now."""
        if not self._queue:
            return False
        if len(self._queue) >= self.policy.max_batch_size:
            return True
        if self._oldest_wait() >= self.policy.max_wait_ms / 1000:
            return True
        return self.policy.max_batch_cost is not None and self._budget_filled()

    def wait_time(self) -> float | None:
        """Seconds until ``ready()`` may turn true or an item expires; None when empty."""
        if not self._queue:
            return None
        if self.ready():
            return 0.0
        until_full_wait = self.policy.max_wait_ms / 1000 - self._oldest_wait()
        now = self._clock()
        deadlines = [i.deadline - now for i in self._queue.values() if i.deadline is not None]
        return max(0.0, min([until_full_wait, *deadlines]))

    def next_batch(self) -> list[WorkItem]:
        """Form and dequeue the next batch (regardless of ``ready()``); [] when empty.

        Call ``expire()`` first so that no expired item is batched.
        """
        if not self._queue:
            return []
        batch, _ = self._select(self._in_order())
        for item in batch:
            self._remove(item)
        return batch

    def _select(self, ordered: list[WorkItem]) -> tuple[list[WorkItem], list[WorkItem]]:
        """The next batch, and the items that could have joined its anchor (its window)."""
        anchor = ordered[0]
        batch = [anchor]
        window = ordered[1 : self.policy.max_batch_size * self.policy.lookahead]
        if anchor.priority is Priority.FIRST_CHUNK:
            window = [item for item in window if item.priority is Priority.FIRST_CHUNK]
        window.sort(key=lambda i: (int(i.priority), abs(i.cost - anchor.cost)))
        for item in window:
            if len(batch) == self.policy.max_batch_size:
                break
            if self.fits(batch, item):
                batch.append(item)
        return batch, window

    def fits(self, batch: list[WorkItem], item: WorkItem) -> bool:
        """Whether ``item`` can join ``batch`` within the size and padded-cost bounds."""
        if len(batch) >= self.policy.max_batch_size:
            return False
        budget = self.policy.max_batch_cost
        if budget is None:
            return True
        return padded_cost([*batch, item]) <= budget

    def _in_order(self) -> list[WorkItem]:
        """The queue in urgency order, but for rule 5: the earliest-deadline item of a request
        under way first when it would miss its deadline behind the queued first chunks."""
        ordered = sorted(self._queue.values(), key=WorkItem.urgency)
        rate = self._rate()
        if rate is None or ordered[0].priority is not Priority.FIRST_CHUNK:
            return ordered
        first_chunks = [i for i in ordered if i.priority is Priority.FIRST_CHUNK]
        behind = next((i for i in ordered if i.priority is Priority.INTERACTIVE), None)
        if behind is None or behind.deadline is None:
            return ordered
        wait = (sum(i.cost for i in first_chunks) + behind.cost) * rate
        if behind.deadline - self._clock() >= wait:
            return ordered
        return [behind, *(i for i in ordered if i is not behind)]

    def _budget_filled(self) -> bool:
        # Filled when the budget leaves out an item that could have joined: items a first
        # chunk's batch never takes (the rest of the requests) do not fill it.
        batch, window = self._select(self._in_order())
        return len(batch) < 1 + len(window)

    def _oldest_wait(self) -> float:
        oldest = min(item.arrival for item in self._queue.values())
        return self._clock() - oldest

    def _retry_after(self) -> float:
        # A rough hint: the queue drains in a few batch times; clients back off at least 1 s.
        return max(1.0, self.policy.max_wait_ms / 1000 * 4)


def padded_cost(batch: list[WorkItem]) -> float:
    """A batch's cost once every item is padded to the costliest one."""
    return len(batch) * max(item.cost for item in batch)


def padding_efficiency(batch: list[WorkItem]) -> float:
    """Useful share of a batch's padded cost: the items' costs over ``padded_cost``; 1.0 for
    no padding (and for a batch of zero cost)."""
    padded = padded_cost(batch)
    return sum(item.cost for item in batch) / padded if padded > 0 else 1.0
