"""Work items: the unit the scheduler queues and batches."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

_ids = itertools.count()


class Priority(IntEnum):
    """Scheduling classes; a lower value is served first."""

    FIRST_CHUNK = 0
    """The first item of an interactive request: it decides the time to first audio."""

    INTERACTIVE = 1
    """Any other item of a live request."""

    BATCH = 2
    """Offline batch-job work; runs when live traffic leaves room."""


@dataclass(eq=False)
class WorkItem:
    """One unit of model work (a sentence, an audio stream, a window).

    Attributes:
        payload: What the adapter receives in ``infer_batch``.
        cost: The item's compute share in the adapter's unit; batches are padded to the costliest.
        priority: Scheduling class.
        deadline: Absolute time on the scheduler's clock after which the item is dropped with a
            deadline error; None for no deadline.
        id: Unique id, assigned at creation.
        arrival: Time the scheduler accepted the item (set by ``Scheduler.submit``).
        seq: Acceptance order, for FIFO tie-breaks (set by ``Scheduler.submit``).
    """

    payload: Any
    cost: float = 1.0
    priority: Priority = Priority.INTERACTIVE
    deadline: float | None = None
    id: int = field(default_factory=lambda: next(_ids))
    arrival: float = 0.0
    seq: int = 0

    def urgency(self) -> tuple[int, float, int]:
        """Sort key: class first, then earliest deadline, then arrival order."""
        deadline = self.deadline if self.deadline is not None else float("inf")
        return (int(self.priority), deadline, self.seq)
