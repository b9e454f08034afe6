"""Property-based tests of the pure scheduler: random arrivals, cancellations, expiries."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from harmonyspeech.config import BatchingPolicy
from harmonyspeech.engine.items import Priority, WorkItem
from harmonyspeech.engine.scheduler import Scheduler, padded_cost
from harmonyspeech.errors import OverloadedError


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_scheduler(**policy: object) -> tuple[Scheduler, FakeClock]:
    clock = FakeClock()
    return Scheduler(BatchingPolicy(**policy), clock), clock  # type: ignore[arg-type]


class SchedulerMachine(RuleBasedStateMachine):
    """Every submitted item ends exactly once: batched, cancelled, expired or rejected; only
    new work (not ``admitted``) is rejected, and exactly when the queue is at its bound for the
    item's class (live items count live ones; batch items count all)."""

    @initialize(
        max_batch_size=st.integers(1, 8),
        budget=st.none() | st.floats(1.0, 40.0),
        max_queue=st.integers(1, 12),
        max_wait_ms=st.sampled_from([0.0, 5.0, 50.0]),
    )
    def setup(self, max_batch_size, budget, max_queue, max_wait_ms) -> None:
        self.scheduler, self.clock = make_scheduler(
            max_batch_size=max_batch_size,
            max_batch_cost=budget,
            max_queue=max_queue,
            max_wait_ms=max_wait_ms,
            lookahead=2,
        )
        self.queued: dict[int, WorkItem] = {}
        self.done: dict[int, str] = {}

    @rule(
        cost=st.floats(0.1, 10.0),
        priority=st.sampled_from(list(Priority)),
        timeout=st.none() | st.floats(0.0, 1.0),
        admitted=st.booleans(),
    )
    def submit(self, cost, priority, timeout, admitted) -> None:
        deadline = None if timeout is None else self.clock.now + timeout
        item = WorkItem(payload=None, cost=cost, priority=priority, deadline=deadline)
        live = [i for i in self.queued.values() if i.priority is not Priority.BATCH]
        waiting = self.queued if priority is Priority.BATCH else live
        full = len(waiting) >= self.scheduler.policy.max_queue
        if full and not admitted:
            with pytest.raises(OverloadedError):
                self.scheduler.submit(item)
            self.done[item.id] = "rejected"
            return
        self.scheduler.submit(item, admitted=admitted)
        self.queued[item.id] = item

    @precondition(lambda self: bool(self.queued))
    @rule(data=st.data())
    def cancel(self, data) -> None:
        item_id = data.draw(st.sampled_from(sorted(self.queued)))
        assert self.scheduler.cancel(item_id) is self.queued.pop(item_id)
        self.done[item_id] = "cancelled"
        assert self.scheduler.cancel(item_id) is None

    @rule(dt=st.floats(0.0, 0.5))
    def tick(self, dt) -> None:
        self.clock.now += dt

    @rule()
    def form_batch(self) -> None:
        for item in self.scheduler.expire():
            assert item.deadline is not None and item.deadline <= self.clock.now
            self._finish(item, "expired")
        before = sorted(self.queued.values(), key=WorkItem.urgency)
        batch = self.scheduler.next_batch()
        if not before:
            assert batch == []
            return
        self._check_batch(batch, before)
        for item in batch:
            self._finish(item, "batched")

    def _check_batch(self, batch: list[WorkItem], before: list[WorkItem]) -> None:
        policy = self.scheduler.policy
        assert 1 <= len(batch) <= policy.max_batch_size
        assert len({i.id for i in batch}) == len(batch)
        if policy.max_batch_cost is not None and len(batch) > 1:
            assert padded_cost(batch) <= policy.max_batch_cost
        # The most urgent item (class, then deadline, then arrival) always goes.
        assert before[0] in batch
        # No waiting item of a more urgent class was passed over while it would have fit.
        chosen = {i.id for i in batch}
        worst = max(i.priority for i in batch)
        for item in before:
            if item.id in chosen or item.priority >= worst:
                continue
            assert not self.scheduler.fits(batch, item)

    def _finish(self, item: WorkItem, how: str) -> None:
        assert item.id in self.queued, f"{how} an item that was not queued"
        assert item.id not in self.done, "an item finished twice"
        del self.queued[item.id]
        self.done[item.id] = how

    @invariant()
    def queue_matches_model(self) -> None:
        if not hasattr(self, "scheduler"):
            return
        assert len(self.scheduler) == len(self.queued)
        for item_id in self.queued:
            assert item_id in self.scheduler


TestSchedulerMachine = SchedulerMachine.TestCase
TestSchedulerMachine.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)


def test_overload_is_raised_exactly_at_the_bound() -> None:
    scheduler, _ = make_scheduler(max_queue=3)
    for _ in range(3):
        scheduler.submit(WorkItem(payload=None))
    with pytest.raises(OverloadedError) as info:
        scheduler.submit(WorkItem(payload=None))
    assert info.value.status_code == 503
    assert "Retry-After" in info.value.headers()
    scheduler.next_batch()
    scheduler.submit(WorkItem(payload=None))


def test_batch_work_never_takes_the_room_of_live_work() -> None:
    scheduler, _ = make_scheduler(max_queue=2, max_batch_size=1)
    for _ in range(2):
        scheduler.submit(WorkItem(payload=None, priority=Priority.BATCH))
    # A batch job filled the queue: live requests still get their max_queue places...
    for priority in (Priority.FIRST_CHUNK, Priority.INTERACTIVE):
        scheduler.submit(WorkItem(payload=None, priority=priority))
    with pytest.raises(OverloadedError):
        scheduler.submit(WorkItem(payload=None))
    # ...and batch work only fills free room, counting every class.
    scheduler.next_batch()
    scheduler.next_batch()  # the live items go first; two batch items still wait
    with pytest.raises(OverloadedError):
        scheduler.submit(WorkItem(payload=None, priority=Priority.BATCH))
    scheduler.next_batch()
    scheduler.submit(WorkItem(payload=None, priority=Priority.BATCH))
    assert len(scheduler) == 2


def test_admitted_work_is_queued_past_the_bound_and_counts_towards_it() -> None:
    scheduler, _ = make_scheduler(max_queue=2, max_batch_size=1)
    for _ in range(2):
        scheduler.submit(WorkItem(payload=None))
    scheduler.submit(WorkItem(payload=None), admitted=True)
    assert len(scheduler) == 3
    scheduler.next_batch()
    with pytest.raises(OverloadedError):
        scheduler.submit(WorkItem(payload=None))  # two left, and the bound is two: still full
    scheduler.next_batch()
    scheduler.submit(WorkItem(payload=None))


def test_batch_waits_for_max_wait_then_goes() -> None:
    scheduler, clock = make_scheduler(max_batch_size=4, max_wait_ms=10)
    scheduler.submit(WorkItem(payload="a"))
    assert not scheduler.ready()
    assert scheduler.wait_time() == pytest.approx(0.010)
    clock.now += 0.010
    assert scheduler.ready()
    assert [i.payload for i in scheduler.next_batch()] == ["a"]
    assert scheduler.wait_time() is None


def test_full_batch_is_ready_immediately() -> None:
    scheduler, _ = make_scheduler(max_batch_size=3, max_wait_ms=1000)
    for name in "abc":
        scheduler.submit(WorkItem(payload=name))
    assert scheduler.ready()
    assert [i.payload for i in scheduler.next_batch()] == ["a", "b", "c"]


def test_cost_budget_fills_a_batch_and_pads_to_the_costliest() -> None:
    scheduler, _ = make_scheduler(max_batch_size=8, max_batch_cost=10, max_wait_ms=1000)
    for cost in (4.0, 4.0, 1.0):
        scheduler.submit(WorkItem(payload=cost, cost=cost))
    assert scheduler.ready()  # 3 x 4 = 12 > 10: not everything fits, so the batch is full
    assert [i.payload for i in scheduler.next_batch()] == [4.0, 4.0]


def test_an_item_over_budget_runs_alone() -> None:
    scheduler, _ = make_scheduler(max_batch_size=8, max_batch_cost=5)
    scheduler.submit(WorkItem(payload="huge", cost=50))
    scheduler.submit(WorkItem(payload="small", cost=1))
    assert [i.payload for i in scheduler.next_batch()] == ["huge"]
    assert [i.payload for i in scheduler.next_batch()] == ["small"]


def test_first_chunks_and_interactive_work_go_before_batch_jobs() -> None:
    scheduler, _ = make_scheduler(max_batch_size=2)
    scheduler.submit(WorkItem(payload="job", priority=Priority.BATCH))
    scheduler.submit(WorkItem(payload="live", priority=Priority.INTERACTIVE))
    scheduler.submit(WorkItem(payload="first", priority=Priority.FIRST_CHUNK))
    assert [i.payload for i in scheduler.next_batch()] == ["first"]
    assert [i.payload for i in scheduler.next_batch()] == ["live", "job"]


def test_first_chunks_batch_only_with_other_first_chunks() -> None:
    # Two streamed requests of three sentences each: their first sentences go together, and
    # nothing else delays them; the rest follow in the next batch.
    scheduler, _ = make_scheduler(max_batch_size=8)
    for request in "ab":
        scheduler.submit(WorkItem(payload=f"{request}0", priority=Priority.FIRST_CHUNK))
        for index in (1, 2):
            scheduler.submit(WorkItem(payload=f"{request}{index}", priority=Priority.INTERACTIVE))
    assert sorted(i.payload for i in scheduler.next_batch()) == ["a0", "b0"]
    assert sorted(i.payload for i in scheduler.next_batch()) == ["a1", "a2", "b1", "b2"]


def test_a_first_chunk_waits_for_other_first_chunks_whatever_the_budget() -> None:
    # The rest of a request, which a first chunk's batch never takes, does not make its batch
    # full: with a budget set, the first chunk used to leave at once, alone.
    for budget in (None, 1000.0):
        scheduler, clock = make_scheduler(max_batch_size=8, max_batch_cost=budget, max_wait_ms=30)
        scheduler.submit(WorkItem(payload="a0", cost=5, priority=Priority.FIRST_CHUNK))
        scheduler.submit(WorkItem(payload="a1", cost=5, priority=Priority.INTERACTIVE))
        assert not scheduler.ready()
        scheduler.submit(WorkItem(payload="b0", cost=5, priority=Priority.FIRST_CHUNK))
        clock.now = 0.03
        assert scheduler.ready()
        assert sorted(i.payload for i in scheduler.next_batch()) == ["a0", "b0"]


def test_earliest_deadline_first_within_a_class() -> None:
    scheduler, _ = make_scheduler(max_batch_size=1)
    scheduler.submit(WorkItem(payload="late", deadline=50.0))
    scheduler.submit(WorkItem(payload="none"))
    scheduler.submit(WorkItem(payload="soon", deadline=5.0))
    assert [scheduler.next_batch()[0].payload for _ in range(3)] == ["soon", "late", "none"]


def test_similar_lengths_are_grouped_within_the_window() -> None:
    scheduler, _ = make_scheduler(max_batch_size=2, lookahead=4)
    for cost in (10.0, 1.0, 1.2, 9.5):
        scheduler.submit(WorkItem(payload=cost, cost=cost))
    assert [i.payload for i in scheduler.next_batch()] == [10.0, 9.5]
    assert [i.payload for i in scheduler.next_batch()] == [1.0, 1.2]


def test_expired_items_leave_and_are_never_batched() -> None:
    scheduler, clock = make_scheduler(max_batch_size=4)
    scheduler.submit(WorkItem(payload="a", deadline=1.0))
    scheduler.submit(WorkItem(payload="b", deadline=3.0))
    clock.now = 2.0
    assert [i.payload for i in scheduler.expire()] == ["a"]
    assert [i.payload for i in scheduler.next_batch()] == ["b"]


def loaded_scheduler(**policy: object) -> tuple[Scheduler, FakeClock]:
    """A scheduler that has run three full batches at 1 s per unit of cost."""
    scheduler, clock = make_scheduler(max_batch_size=4, max_queue=100, **policy)
    for _ in range(3):
        scheduler.observe_batch([WorkItem(payload=None, cost=1.0) for _ in range(4)], 4.0)
    return scheduler, clock


def test_new_work_that_would_miss_its_deadline_behind_the_queue_is_refused_at_once() -> None:
    scheduler, clock = loaded_scheduler()
    for _ in range(10):  # 10 s of live work
        scheduler.submit(WorkItem(payload="old", cost=1.0, deadline=clock.now + 60))
    late = WorkItem(payload="new", cost=1.0, deadline=clock.now + 5)
    with pytest.raises(OverloadedError, match="about 11 s of work") as refused:
        scheduler.submit(late)
    # It would wait 11 s, where it may expect to wait a fifth less than its 5 s (headroom).
    assert refused.value.retry_after_s == pytest.approx(11 - 0.8 * 5)
    assert late.id not in scheduler
    # It fits with more time; work of a request under way is never refused.
    with pytest.raises(OverloadedError):
        scheduler.submit(WorkItem(payload="just late", cost=1.0, deadline=clock.now + 13))
    scheduler.submit(WorkItem(payload="patient", cost=1.0, deadline=clock.now + 14))
    scheduler.submit(WorkItem(payload="under way", cost=1.0, deadline=clock.now + 5), admitted=True)
    assert len(scheduler) == 12


def test_batch_work_counts_all_queued_work_and_live_work_only_live_work() -> None:
    scheduler, clock = loaded_scheduler()
    for _ in range(10):
        scheduler.submit(WorkItem(payload="job", cost=1.0, priority=Priority.BATCH))
    # Batch work runs after live work: it delays none of it.
    scheduler.submit(WorkItem(payload="live", cost=1.0, deadline=clock.now + 5))
    with pytest.raises(OverloadedError):
        scheduler.submit(WorkItem(payload="job", cost=1.0, priority=Priority.BATCH, deadline=5))


def test_admission_waits_for_full_batches_and_can_be_turned_off() -> None:
    # Small batches of a quiet server say nothing of a loaded one (on a GPU, far slower per item).
    scheduler, clock = make_scheduler(max_batch_size=4, max_queue=100)
    for _ in range(5):
        scheduler.observe_batch([WorkItem(payload=None, cost=1.0)], 10.0)
    for _ in range(20):
        scheduler.submit(WorkItem(payload="x", cost=1.0, deadline=clock.now + 1))
    off, clock = loaded_scheduler(refuse_late_work=False)
    for _ in range(20):
        off.submit(WorkItem(payload="x", cost=1.0, deadline=clock.now + 1))
    assert len(scheduler) == len(off) == 20


def test_a_request_under_way_goes_before_first_chunks_that_would_make_it_late() -> None:
    scheduler, clock = loaded_scheduler(max_wait_ms=0)  # 1 s per unit of cost, batches of 4
    scheduler.submit(WorkItem(payload="a1", cost=1.0, deadline=10.0), admitted=True)
    for name in "bcdefgh":  # 7 s of first sentences of newer requests
        scheduler.submit(
            WorkItem(payload=f"{name}0", cost=1.0, priority=Priority.FIRST_CHUNK, deadline=60.0)
        )
    # a1 has time: the first chunks go first.
    assert [i.payload for i in scheduler.next_batch()] == ["b0", "c0", "d0", "e0"]
    clock.now = 7.0  # now 3 s of first chunks are ahead of it, and 3 s are left
    batch = [i.payload for i in scheduler.next_batch()]
    assert batch[0] == "a1" and set(batch[1:]) <= {"f0", "g0", "h0"}
