"""The contract between the engine and a model family.

An adapter owns one loaded model. The engine's worker calls ``load()`` once on its inference thread,
then ``infer_batch()`` with batches formed by the scheduler. Adapters never import fastapi or ray,
and import their heavy libraries (torch, ...) inside ``load()`` so that the config checker, the
scheduler and the API can be imported without them.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from harmonyspeech.config import ModelConfigBase

RequestT = TypeVar("RequestT")
ResultT = TypeVar("ResultT")

logger = logging.getLogger(__name__)


class ModelAdapter(ABC, Generic[RequestT, ResultT]):
    """One loaded model of one family.

    Contract:
        * ``infer_batch(items)`` returns exactly one entry per item, in order. An entry may be an
          ``Exception`` instance, which fails that item's request alone.
        * A batched result equals the result of running the item alone (DESIGN.md decision 3).
        * ``cost(item)`` is the item's share of a batch's compute, in a unit the family picks
          (audio seconds, phones, ...); the scheduler pads batches to the costliest item.
        * Only the worker's inference thread calls ``load``/``infer_batch``/``unload``.
    """

    def __init__(self, config: ModelConfigBase):
        self.config = config

    @abstractmethod
    def load(self) -> None:
        """Load weights and prepare the runtime. Called once, before any ``infer_batch``."""

    @abstractmethod
    def infer_batch(self, items: Sequence[RequestT]) -> list[ResultT | Exception]:
        """Run one batch; see the class contract."""

    def cost(self, item: RequestT) -> float:
        """The item's cost for batch budgeting and length grouping."""
        return 1.0

    def unload(self) -> None:
        """Release the model's memory. Optional."""

    def describe(self) -> dict[str, Any]:
        """Facts about the loaded model for ``/v1/models`` (e.g. that weights are random)."""
        return {}


def resolve_num_threads(config: ModelConfigBase) -> int:
    """Intra-op thread count for a model: explicit setting, else one per reserved CPU."""
    if config.num_threads is not None:
        return config.num_threads
    return max(1, round(config.deployment.num_cpus))


def torch_device(device: str) -> str:
    """A config's ``device`` for torch: ``auto`` becomes ``cuda`` when available, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def set_torch_threads(count: int) -> None:
    """Set torch's intra-op threads explicitly (DESIGN.md decision 11).

    Importing ``silero_vad`` silently sets torch to one thread; adapters call this after their
    imports so the configured count wins.
    """
    import torch

    torch.set_num_threads(count)
    logger.debug("torch intra-op threads set to %d", count)
