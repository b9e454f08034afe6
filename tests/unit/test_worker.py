"""The worker: batching, failure isolation, cancellation, deadlines, overload.

These run the real Silero VAD adapter; items are queued before the inference thread starts, so
what is batched together is deterministic.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import CancelledError

import numpy as np
import pytest

from harmonyspeech.config import BatchingPolicy, FasterWhisperModelConfig, SileroVadModelConfig
from harmonyspeech.engine.stats import WorkerStats
from harmonyspeech.engine.worker import ModelWorker, WorkerState
from harmonyspeech.errors import (
    DeadlineExceededError,
    InternalError,
    InvalidRequestError,
    ModelLoadError,
    OverloadedError,
)
from harmonyspeech.models.registry import create_adapter
from harmonyspeech.models.silero_vad import SileroVadAdapter
from harmonyspeech.models.types import VadRequest
from tests.unit.vad_clips import clip, regions


def make_worker(**policy: object) -> ModelWorker:
    config = SileroVadModelConfig(name="vad", family="silero-vad", num_threads=1)
    policy = {"max_batch_size": 8, "max_wait_ms": 0, **policy}
    return ModelWorker(SileroVadAdapter(config), BatchingPolicy(**policy), name="vad")


def request(name: str) -> VadRequest:
    return VadRequest(clip(name), 16000)


@pytest.fixture
def worker():
    created: list[ModelWorker] = []

    def factory(**policy: object) -> ModelWorker:
        created.append(make_worker(**policy))
        return created[-1]

    yield factory
    for w in created:
        w.stop()


def test_queued_streams_run_as_one_batch_and_match_single_runs(worker) -> None:
    names = list(regions())
    batched = worker()
    futures = [batched.submit(request(n)) for n in names]
    batched.start()
    together = [f.result(timeout=60) for f in futures]
    assert batched.stats.snapshot()["batch_sizes"] == {str(len(names)): 1}

    alone = worker(max_batch_size=1)
    alone.start()
    separately = [alone.submit(request(n)).result(timeout=60) for n in names]
    assert together == separately
    assert all(r.segments for r in together)


def test_one_bad_item_fails_alone(worker) -> None:
    w = worker()
    good = w.submit(request("short"))
    empty = w.submit(VadRequest(np.zeros(0, dtype=np.float32), 16000))
    w.start()
    assert good.result(timeout=60).segments
    with pytest.raises(InvalidRequestError):
        empty.result(timeout=60)
    stats = w.stats.snapshot()
    # An invalid input is the request's mistake: it is not counted as a model failure.
    assert (stats["rejected"], stats["failed"]) == (1, 0)


def test_a_batch_that_raises_is_rerun_item_by_item(worker) -> None:
    w = worker()
    good = [w.submit(request(n)) for n in ("short", "two_phrases")]
    # Not numeric: the batched forward raises, so the worker isolates the culprit.
    poison = w.submit(VadRequest(np.array(["not", "audio"], dtype=object), 16000))
    w.start()
    assert all(f.result(timeout=60).segments for f in good)
    with pytest.raises(InternalError, match="vad"):
        poison.result(timeout=60)
    stats = w.stats.snapshot()
    assert (stats["failed"], stats["batches"], stats["items"]) == (1, 1, 3)


def test_cancelled_items_leave_the_queue(worker) -> None:
    w = worker()
    futures = [w.submit(request("short")) for _ in range(5)]
    assert futures[1].cancel() and futures[3].cancel()
    assert w.queue_depth() == 3
    w.start()
    for i in (0, 2, 4):
        assert futures[i].result(timeout=60).segments
    with pytest.raises(CancelledError):
        futures[1].result()
    stats = w.stats.snapshot()
    assert stats["items"] == 3 and stats["cancelled"] == 2


async def test_cancelling_an_awaiting_task_removes_its_item(worker) -> None:
    w = worker()
    task = asyncio.create_task(w.infer(request("short")))
    await asyncio.sleep(0)
    assert w.queue_depth() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert w.queue_depth() == 0
    assert w.stats.snapshot()["cancelled"] == 1


def test_deadline_passes_while_queued(worker) -> None:
    w = worker()
    late = w.submit(request("short"), timeout_s=0.0)
    w.start()
    with pytest.raises(DeadlineExceededError):
        late.result(timeout=60)
    assert w.stats.snapshot()["expired"] == 1


def test_full_queue_fails_fast(worker) -> None:
    w = worker(max_queue=2)
    w.submit(request("short"))
    w.submit(request("short"))
    with pytest.raises(OverloadedError):
        w.submit(request("short"))


def test_a_full_queue_takes_work_of_requests_under_way(worker) -> None:
    w = worker(max_queue=1)
    first = w.submit(request("short"))
    later = w.submit(request("short"), admitted=True)
    with pytest.raises(OverloadedError):
        w.submit(request("short"))
    w.start()
    assert first.result(timeout=60) == later.result(timeout=60)


def test_lifecycle_states(worker) -> None:
    w = worker()
    assert w.state is WorkerState.CREATED
    w.start()
    assert w.wait_ready(timeout=60)
    assert w.state is WorkerState.READY and w.alive()
    w.stop()
    assert w.state is WorkerState.STOPPED


def test_work_submitted_as_the_load_fails_is_refused(tmp_path) -> None:
    # The submission reads its deadline from the clock between its two availability checks:
    # this clock lets the load fail right there. The item used to be queued on a worker whose
    # thread had gone, and its request waited for its whole deadline.
    config = FasterWhisperModelConfig(
        name="whisper",
        family="faster-whisper",
        num_threads=1,
        weights={"path": str(tmp_path / "missing")},
    )
    worker: ModelWorker

    def clock() -> float:
        worker.wait_ready(timeout=60)
        return time.monotonic()

    worker = ModelWorker(
        create_adapter(config), BatchingPolicy(max_wait_ms=0), name="whisper", clock=clock
    )
    worker.start()
    try:
        with pytest.raises(ModelLoadError, match="unavailable"):
            worker.submit(b"unused", timeout_s=10)
        assert worker.state is WorkerState.FAILED
    finally:
        worker.stop()


def test_a_worker_stopped_while_loading_never_becomes_ready() -> None:
    w = make_worker()
    w.start()
    w.stop(timeout=0)  # the load goes on
    assert w._thread is not None
    w._thread.join(60)  # the load is over, and the thread with it
    assert w.state is WorkerState.STOPPED and not w.wait_ready(timeout=0)
    with pytest.raises(ModelLoadError, match="shutting down"):
        w.submit(request("short"))


def test_outcomes_are_counted_by_name() -> None:
    stats = WorkerStats()
    stats.count("cancelled", 3)
    stats.count("failed")
    snapshot = stats.snapshot()
    assert (snapshot["cancelled"], snapshot["failed"], snapshot["expired"]) == (3, 1, 0)
    with pytest.raises(ValueError, match="unknown outcome"):
        stats.count("lost")  # type: ignore[arg-type]


def test_items_given_up_at_their_deadline_count_as_expired() -> None:
    # The caller's deadline passes first (the ingress cancels its call): that used to count as
    # a client going away, so the stats showed no deadline overload at all.
    now = [100.0]
    config = SileroVadModelConfig(name="vad", family="silero-vad", num_threads=1)
    w = ModelWorker(
        SileroVadAdapter(config), BatchingPolicy(max_wait_ms=0), name="vad", clock=lambda: now[0]
    )
    late, early = (w.submit(request("short"), timeout_s=10) for _ in range(2))
    assert early.cancel()  # its client left with 10 s to go
    now[0] = 109.5  # the caller's clock reached the deadline a moment before this one
    assert late.cancel()
    stats = w.stats.snapshot()
    assert (stats["cancelled"], stats["expired"]) == (1, 1)


def test_work_that_cannot_meet_its_deadline_is_refused_once_batches_were_timed(worker) -> None:
    w = worker(max_batch_size=2)
    w.start()
    assert w.wait_ready(timeout=60)
    # No full batch timed yet: nothing to judge by, so it is queued (and expires).
    hopeless = w.submit(request("short"), timeout_s=1e-6)
    with pytest.raises(DeadlineExceededError):
        hopeless.result(timeout=60)
    for _ in range(3):  # three batches, each at least half full
        pair = [w.submit(request("short")) for _ in range(2)]
        for future in pair:
            future.result(timeout=60)
    with pytest.raises(OverloadedError, match="deadline is in 0 s") as refused:
        w.submit(request("short"), timeout_s=1e-6)
    assert refused.value.retry_after_s >= 1
