"""The model worker: one adapter, one scheduler, one dedicated inference thread.

Callers (the event loop of a Serve replica, a batch job, a benchmark) submit payloads and get
futures; the inference thread loads the model, then repeatedly asks the scheduler for a batch, runs
``adapter.infer_batch`` and resolves each item's future. The event loop never blocks on inference
(DESIGN.md decision 11).

Queue depth, queue waits and each batch's size, padding efficiency and latency are recorded
in ``stats`` and as metrics (``harmonyspeech.telemetry.catalog``), tagged with the instance name.

Failure isolation: if a whole batch raises, its items are re-run one by one so that one bad item
fails only its own request. Items whose futures were cancelled while queued leave the queue.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from harmonyspeech.config import BatchingPolicy
from harmonyspeech.engine.items import Priority, WorkItem
from harmonyspeech.engine.scheduler import Clock, Scheduler, padding_efficiency
from harmonyspeech.engine.stats import Outcome, WorkerStats
from harmonyspeech.errors import (
    DeadlineExceededError,
    HarmonySpeechError,
    InternalError,
    ModelLoadError,
)
from harmonyspeech.models.base import ModelAdapter
from harmonyspeech.telemetry import catalog as metrics

logger = logging.getLogger(__name__)

EXPIRY_SLACK_S = 1.0
"""A cancellation this close to an item's deadline is the deadline passing where the call was
made (its clock started a little earlier, before the item travelled here): counted as expired."""


class WorkerState(enum.StrEnum):
    """Lifecycle of a worker."""

    CREATED = "created"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    STOPPED = "stopped"


class ModelWorker:
    """Serves one model instance.

    Args:
        adapter: The (not yet loaded) model adapter.
        policy: Batching policy for the scheduler.
        name: Instance name, for logs and errors.
        clock: Time source shared with the scheduler.
    """

    def __init__(
        self,
        adapter: ModelAdapter,
        policy: BatchingPolicy,
        *,
        name: str,
        clock: Clock = time.monotonic,
    ):
        self.adapter = adapter
        self.name = name
        self._clock = clock
        self._scheduler = Scheduler(policy, clock)
        self._futures: dict[int, Future] = {}
        self._cond = threading.Condition()
        self._state = WorkerState.CREATED
        self._load_error: str | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.stats = WorkerStats()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def state(self) -> WorkerState:
        return self._state

    @property
    def load_error(self) -> str | None:
        """Why loading failed, if it did."""
        return self._load_error

    def start(self) -> None:
        """Start the inference thread; the model loads on it in the background."""
        if self._thread is not None:
            raise RuntimeError(f"worker {self.name!r} already started")
        self._state = WorkerState.LOADING
        self._thread = threading.Thread(target=self._run, name=f"infer-{self.name}", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the model is loaded (True) or loading failed / timed out (False)."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._state not in (WorkerState.CREATED, WorkerState.LOADING), timeout
            )
            return self._state is WorkerState.READY

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the thread; queued items fail with an overload error so callers retry."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        self._state = WorkerState.STOPPED

    def alive(self) -> bool:
        """False if the inference thread died unexpectedly."""
        return self._thread is not None and (self._thread.is_alive() or self._stopping)

    # -- submission --------------------------------------------------------------------------

    def submit(
        self,
        payload: Any,
        *,
        priority: Priority = Priority.INTERACTIVE,
        timeout_s: float | None = None,
        admitted: bool = False,
    ) -> Future:
        """Queue one payload; the future resolves to the adapter's result for it.

        ``admitted`` work (of a request already under way) is queued past the queue bound.

        Raises:
            OverloadedError: The queue is full (and the work is not ``admitted``).
            ModelLoadError: The model failed to load.
        """
        self._refuse_if_unavailable()  # before the cost, which may be work
        deadline = self._clock() + timeout_s if timeout_s is not None else None
        item = WorkItem(payload, self.adapter.cost(payload), priority, deadline)
        future: Future = Future()
        with self._cond:
            # Again under the lock: a load that failed meanwhile has failed what was queued
            # and left no thread to run anything queued after it.
            self._refuse_if_unavailable()
            self._scheduler.submit(item, admitted=admitted)
            self._futures[item.id] = future
            self._queue_changed()
            self._cond.notify()
        future.add_done_callback(lambda f, item_id=item.id: self._on_done(item_id, f))
        return future

    def _refuse_if_unavailable(self) -> None:
        if self._state is WorkerState.FAILED:
            raise ModelLoadError(f"model {self.name!r} is unavailable: {self._load_error}")
        if self._stopping:
            raise ModelLoadError(f"model {self.name!r} is shutting down")

    async def infer(
        self,
        payload: Any,
        *,
        priority: Priority = Priority.INTERACTIVE,
        timeout_s: float | None = None,
        admitted: bool = False,
    ) -> Any:
        """Async form of ``submit``; cancelling the awaiting task removes the queued item."""
        return await asyncio.wrap_future(
            self.submit(payload, priority=priority, timeout_s=timeout_s, admitted=admitted)
        )

    def queue_depth(self) -> int:
        with self._cond:
            return len(self._scheduler)

    def _on_done(self, item_id: int, future: Future) -> None:
        if future.cancelled():
            with self._cond:
                item = self._scheduler.cancel(item_id)
                if item is not None:
                    self.stats.count(self._why_left(item))
                    self._queue_changed()
                self._futures.pop(item_id, None)

    def _why_left(self, item: WorkItem) -> Outcome:
        """Why a cancelled item left: its caller gave up at the deadline (``expired``), or
        before it (``cancelled``: the client went away)."""
        if item.deadline is not None and self._clock() >= item.deadline - EXPIRY_SLACK_S:
            return "expired"
        return "cancelled"

    # -- inference thread --------------------------------------------------------------------

    def _run(self) -> None:
        if not self._load():
            return
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._record_waits([item for item, _ in batch])
            self._execute(batch)

    def _load(self) -> bool:
        started = time.perf_counter()
        try:
            self.adapter.load()
        except Exception as exc:
            logger.exception("model %r failed to load", self.name)
            with self._cond:
                self._load_error = f"{type(exc).__name__}: {exc}"
                self._state = WorkerState.FAILED
                self._fail_all(ModelLoadError(f"model {self.name!r} failed to load: {exc}"))
                self._cond.notify_all()
            return False
        logger.info("model %r loaded in %.2f s", self.name, time.perf_counter() - started)
        with self._cond:
            if self._stopping:
                # Stopped while it loaded: the worker stays stopped, not ready.
                self._fail_all(ModelLoadError(f"model {self.name!r} is shutting down"))
                self._cond.notify_all()
                return False
            self._state = WorkerState.READY
            # A model nobody has called yet has a queue-depth series too (0, or what waits).
            self._queue_changed()
            self._cond.notify_all()
        return True

    def _next_batch(self) -> list[tuple[WorkItem, Future]] | None:
        with self._cond:
            while True:
                if self._stopping:
                    self._fail_all(ModelLoadError(f"model {self.name!r} is shutting down"))
                    return None
                self._expire()
                if self._scheduler.ready():
                    items = self._scheduler.next_batch()
                    batch = [(item, self._futures.pop(item.id)) for item in items]
                    self._queue_changed()
                    return batch
                self._cond.wait(self._scheduler.wait_time())

    def _expire(self) -> None:
        expired = self._scheduler.expire()
        for item in expired:
            future = self._futures.pop(item.id)
            self.stats.count("expired")
            _resolve(future, DeadlineExceededError(f"model {self.name!r}: deadline passed"))
        if expired:
            self._queue_changed()

    def _queue_changed(self) -> None:
        """Record the queue depth (call with the lock held, after the queue changed)."""
        depth = len(self._scheduler)
        self.stats.record_queue_depth(depth)
        metrics.QUEUE_DEPTH.record(depth, model=self.name)

    def _record_waits(self, items: list[WorkItem]) -> None:
        """Queue wait of each dequeued item, recorded outside the lock."""
        now = self._clock()
        for item in items:
            wait = max(0.0, now - item.arrival)
            metrics.QUEUE_WAIT.record(wait, model=self.name, priority=item.priority.name.lower())

    def _fail_all(self, error: HarmonySpeechError) -> None:
        for item_id, future in list(self._futures.items()):
            self._scheduler.cancel(item_id)
            _resolve(future, error)
        self._futures.clear()
        self._queue_changed()

    def _execute(self, batch: list[tuple[WorkItem, Future]]) -> None:
        live = [(item, fut) for item, fut in batch if fut.set_running_or_notify_cancel()]
        for item, fut in batch:
            if fut.cancelled():
                self.stats.count(self._why_left(item))
        if not live:
            return
        items = [item for item, _ in live]
        started = time.perf_counter()
        results = self._infer_isolated([item.payload for item in items])
        seconds = time.perf_counter() - started
        self.stats.record_batch(items, seconds)
        with self._cond:
            self._scheduler.observe_batch(items, seconds)
        for (_, future), result in zip(live, results, strict=True):
            if isinstance(result, Exception):
                result = self._as_error(result)
                if result.status_code < 500:
                    self.stats.count("rejected")  # the request's mistake, not the model's
                else:
                    self.stats.count("failed")
            _resolve(future, result)
        # After the results are out: exporting metrics must not delay the batch's requests.
        metrics.BATCH_SIZE.record(len(items), model=self.name)
        metrics.PADDING_EFFICIENCY.record(padding_efficiency(items), model=self.name)
        metrics.BATCH_LATENCY.record(seconds, model=self.name)

    def _infer_isolated(self, payloads: Sequence[Any]) -> list[Any]:
        try:
            return self._infer_checked(payloads)
        except Exception as exc:
            if len(payloads) == 1:
                return [self._as_error(exc)]
            logger.warning(
                "batch of %d on %r failed (%s); re-running items one by one",
                len(payloads),
                self.name,
                exc,
            )
            return [self._infer_isolated([payload])[0] for payload in payloads]

    def _infer_checked(self, payloads: Sequence[Any]) -> list[Any]:
        results = self.adapter.infer_batch(payloads)
        if len(results) != len(payloads):
            raise InternalError(
                f"model {self.name!r} returned {len(results)} results for a batch of "
                f"{len(payloads)} items"
            )
        return results

    def _as_error(self, exc: Exception) -> HarmonySpeechError:
        if isinstance(exc, HarmonySpeechError):
            return exc
        logger.error("model %r failed on an item", self.name, exc_info=exc)
        return InternalError(f"model {self.name!r} failed: {type(exc).__name__}: {exc}")


def _resolve(future: Future, result: Any) -> None:
    if future.done():
        return
    if not future.running() and not future.set_running_or_notify_cancel():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
