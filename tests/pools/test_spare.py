"""``spare="auto"`` (SPEC §5): more pre-queued while tasks are short, bounded.

The policy (``AutoSpare``) is driven by hand with outcomes of chosen
durations; the scheduler's side (a lock-holding task is never queued beyond
one spare) is checked on a pool that records what it was handed, in the
caller's thread, without timing anything.
"""

from __future__ import annotations

import collections
import functools
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pexen.sched import PoolError, Sched
from pexen.sched._calling import execute
from pexen.sched._pools.base import AutoSpare, Outcome
from pexen.sched.meta import assign_val
from pexen.sched.pool import ProcessWorkerPool, ThreadWorkerPool, WorkerPool


def outcomes(duration: float, n: int = 8) -> list[Outcome]:
    return [Outcome(i, {}, None, None, 0.0, duration) for i in range(n)]


def test_auto_starts_at_one_and_reports_the_count_in_force():
    pool = ThreadWorkerPool(workers=2)
    assert (pool.spare, pool.capacity) == (1, 3)
    assert repr(pool) == "ThreadWorkerPool(workers=2, spare='auto')"
    pool.tune(outcomes(1e-6))
    assert pool.spare == 2  # grew, at most doubling
    assert pool.capacity == 4


def test_an_int_spare_keeps_its_exact_meaning():
    pool = ThreadWorkerPool(workers=2, spare=3)
    pool.tune(outcomes(1e-6))
    assert (pool.spare, pool.auto_spare) == (3, None)
    assert repr(pool) == "ThreadWorkerPool(workers=2, spare=3)"


@pytest.mark.parametrize("bad", ["many", -1, 1.5, True])
def test_a_bad_spare_is_refused(bad):
    with pytest.raises(PoolError, match="spare="):
        ThreadWorkerPool(spare=bad)


def test_short_tasks_grow_it_to_the_budget_and_no_further():
    auto, spare = AutoSpare(), 1
    for _ in range(30):
        spare = auto.next_spare(spare, 2, outcomes(1e-6))
    assert spare == AutoSpare.LIMIT * 2  # 1 us tasks: the limit, not the budget
    auto, spare = AutoSpare(), 1
    for _ in range(30):
        spare = auto.next_spare(spare, 2, outcomes(1e-4))
    assert spare in (39, 40)  # 2 ms of 0.1 ms tasks for each of 2 workers


def test_long_tasks_make_it_exactly_one():
    auto, spare = AutoSpare(), 1
    for _ in range(30):
        spare = auto.next_spare(spare, 4, outcomes(1e-6))
    assert spare > 1
    for _ in range(30):
        spare = auto.next_spare(spare, 4, outcomes(AutoSpare.BUDGET * 2))
    assert spare == 1


def test_outcomes_without_a_duration_change_nothing():
    auto = AutoSpare()
    assert auto.next_spare(5, 2, outcomes(None)) == 5  # type: ignore[arg-type]


@given(st.lists(st.lists(st.floats(1e-7, 10.0), min_size=1, max_size=20),
                min_size=1, max_size=40),
       st.integers(1, 64))
def test_the_queued_work_stays_within_the_budget(batches, workers):
    """Invariant: 1 <= spare <= LIMIT per worker, at most doubling per batch,
    and beyond one spare, spare * mean duration stays within the budget."""
    auto, spare = AutoSpare(), 1
    for batch in batches:
        previous = spare
        spare = auto.next_spare(
            spare, workers, [Outcome(0, {}, None, None, 0.0, d) for d in batch]
        )
        assert 1 <= spare <= AutoSpare.LIMIT * workers
        assert spare <= 2 * previous
        if spare > 1:
            assert spare * auto.mean <= AutoSpare.BUDGET * workers * (1 + 1e-9)


def test_each_run_starts_afresh():
    pool = ThreadWorkerPool(workers=1)
    tasks = [functools.partial(int) for _ in range(200)]
    list(Sched(tasks).run(pool))
    assert pool.spare > 1  # it learnt the tasks are short
    pool.start()
    try:
        assert pool.spare == 1
    finally:
        pool.stop()


class RecordingPool(WorkerPool):
    """Runs jobs in the caller's thread, newest last; records what was out
    each time a job came in."""

    def __init__(self, workers: int, spare="auto", batch: int = 1) -> None:
        super().__init__(workers, spare)
        self.queue: collections.deque = collections.deque()
        self.batch = batch
        self.out_at_submit: list[tuple[bool, int]] = []  # (takes locks, out)

    def _start(self) -> None:
        self.queue.clear()

    def _stop(self, cancel: bool) -> None:
        self.queue.clear()

    def submit(self, job) -> None:
        self.queue.append(job)
        locks = bool(getattr(job.task, "pexen_meta", None) and (
            job.task.pexen_meta.claims or job.task.pexen_meta.uses))
        self.out_at_submit.append((locks, len(self.queue)))

    def wait(self):
        n = min(self.batch, len(self.queue))
        return [execute(self.queue.popleft()) for _ in range(n)]


def _short(i: int) -> int:
    return i


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_a_lock_holding_task_is_never_queued_beyond_one_spare(workers):
    tasks = []
    for i in range(600):
        task = functools.partial(_short, i)
        if i % 7 == 0:
            assign_val(task, claims=[f"r{i % 3}"])
        elif i % 11 == 0:
            assign_val(task, uses=["shared"])
        tasks.append(task)
    pool = RecordingPool(workers)
    results = list(Sched(tasks).run(pool))
    assert len(results) == len(tasks)
    assert max(out for _locks, out in pool.out_at_submit) > workers + 1  # it grew
    assert all(out <= workers + 1 for locks, out in pool.out_at_submit if locks)


def test_with_an_int_spare_lock_holding_tasks_queue_as_before():
    tasks = [functools.partial(_short, i) for i in range(20)]
    for task in tasks:
        assign_val(task, uses=["shared"])
    pool = RecordingPool(1, spare=5)
    list(Sched(tasks).run(pool))
    assert max(out for _locks, out in pool.out_at_submit) == 6


def test_priorities_still_order_the_dispatch_under_auto():
    """The task that stops dispatch (locks, no room) is not jumped over."""
    order = []

    def make(name, priority, **fields):
        def task():
            order.append(name)
        assign_val(task, priority=priority, **fields)
        return task

    tasks = [make(f"short{i}", 0) for i in range(50)]
    tasks += [make("locked", 1, claims=["db"]), make("after", 2)]
    list(Sched(tasks).run(RecordingPool(1)))
    assert order.index("locked") < order.index("after")


@pytest.mark.parametrize("make_pool", [
    lambda: ThreadWorkerPool(workers=2),
    lambda: ProcessWorkerPool(workers=2),
], ids=["thread", "process"])
def test_pools_report_durations_that_feed_the_policy(make_pool):
    pool = make_pool()
    tasks = [functools.partial(_short, i) for i in range(300)]
    assert sorted(res.ret for res in Sched(tasks).run(pool)) == list(range(300))
    assert pool.auto_spare is not None and pool.auto_spare.mean is not None
    assert pool.spare > 1


DEADLOCK = 10.0  # seconds: only so that the broken behaviour fails, not hangs


def _wait_for(event: threading.Event) -> bool:
    return event.wait(DEADLOCK)


@pytest.mark.parametrize("second", [{"claims": ["db"]}, {"claims": ["other"]}],
                         ids=["same-lock", "other-lock"])
def test_a_second_lock_taking_task_does_not_idle_a_free_worker(second):
    """Two workers, one busy with a lock: the other runs what is ready.

    The first task waits until a plain task behind the second lock-taker has
    run: on the free worker, whether the second one waits for the same lock
    (it must not hold the dispatch back) or takes another (it may start).
    """
    ran = threading.Event()
    first = functools.partial(_wait_for, ran)
    assign_val(first, claims=["db"])
    other = functools.partial(_short, 1)
    assign_val(other, **second)
    plain = ran.set
    results = list(Sched([first, other, plain]).run(ThreadWorkerPool(workers=2)))
    assert {res.task: res.ret for res in results}[first] is True
