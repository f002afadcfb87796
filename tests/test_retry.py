"""Retries (SPEC §11): which failures are retried, when, and the timer."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pexen import PexenWarning
from pexen.sched import (
    Sched,
    TaskFailError,
    TaskTimeoutError,
    UnrunTasksWarning,
    WorkerCrashError,
)
from pexen.sched._retry import RetryTimer, retry_delay, retryable
from pexen.sched.meta import MAX_TIMEOUT, assign_val, func_meta
from pexen.sched.pool import InlineWorkerPool, ProcessWorkerPool, ThreadWorkerPool
from tests import _proc_tasks
from tests._async import run as run_on_a_loop


class Flaky(TaskFailError):
    """A controlled failure worth retrying, when retry_on names it."""


class Cancelled(Exception):
    """Stands for an exception that is never retried."""


@pytest.mark.parametrize(
    ("exc", "retry_on", "expected"),
    [
        (ValueError("x"), (Exception,), True),
        (WorkerCrashError("died"), (Exception,), True),
        (TaskTimeoutError("late"), (Exception,), True),
        (ValueError("x"), (OSError,), False),
        (ConnectionError("x"), (OSError,), True),
        (KeyboardInterrupt(), (Exception,), False),
        (TaskFailError("no"), (Exception,), False),  # a decision, not an accident
        (TaskFailError("no"), (TaskFailError,), True),
        (Flaky("again"), (Flaky,), True),
        (TaskFailError("no"), (Flaky,), False),
        (Cancelled(), (Exception,), False),  # never
        (None, (Exception,), False),
    ],
    ids=repr,
)
def test_what_is_retried(exc, retry_on, expected):
    assert retryable(exc, retry_on, never=(Cancelled,)) is expected


def test_delays_grow_by_the_backoff_up_to_a_year():
    assert [retry_delay(0.5, 2, n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert retry_delay(0, 10, 5) == 0
    assert retry_delay(3, 1, 7) == 3
    assert retry_delay(1, 10, 100) == MAX_TIMEOUT
    assert retry_delay(1, 10.0, 10_000) == MAX_TIMEOUT  # overflows a float


class Rec:
    def __init__(self, seq):
        self.seq = seq


def test_the_timer_wakes_the_loop_once_a_task_is_due_and_hands_them_out_in_order():
    woken = threading.Event()
    timer = RetryTimer(woken.set)
    try:
        start = time.monotonic()
        later, sooner = Rec(0), Rec(1)
        timer.add(later, start + 3600)
        timer.add(sooner, start + 0.01)
        assert timer.next_due() == start + 0.01
        assert timer.due(start) == []
        assert woken.wait(timeout=30)  # only to catch a timer that never fires
        assert timer.due(time.monotonic()) == [sooner]
        assert len(timer) == 1
        assert timer.remove(later) and not timer.remove(later)
        now = time.monotonic()
        timer.add(later, now)
        timer.add(sooner, now - 1)
        assert timer.due(now) == [sooner, later]
    finally:
        assert timer.close() == []


def test_close_returns_what_still_waits_and_stops_the_thread():
    timer = RetryTimer(lambda: None)
    waiting = Rec(7)
    timer.add(waiting, time.monotonic() + 3600)
    assert [t.name for t in threading.enumerate()].count("pexen-retry-timer") == 1
    assert timer.close() == [waiting]
    assert "pexen-retry-timer" not in [t.name for t in threading.enumerate()]


def test_a_timer_never_used_starts_no_thread():
    timer = RetryTimer(lambda: None)
    assert timer.due(time.monotonic()) == [] and timer.next_due() is None
    assert timer.close() == []


# -- in the scheduler --------------------------------------------------------


def flaky(name, failures, **fields):
    """A task that fails its first *failures* attempts, then returns *name*.

    Each attempt notes the shared dict it started with in ``starts``.
    """
    starts = []

    def fn(shared):
        starts.append(dict(shared))
        shared["attempt"] = len(starts)
        if len(starts) <= failures:
            raise ValueError(f"{name} failed attempt {len(starts)}")
        return name

    fn.__name__ = fn.__qualname__ = name
    fn.starts = starts
    return func_meta(**fields)(fn)


def test_a_failed_attempt_is_retried_before_dependents_see_anything():
    order = []
    first = flaky("first", 2, retries=2, provides=["data"])

    @func_meta(requires=["data"])
    def then(shared):
        order.append(("then", dict(shared)))
        return "then"

    s = Sched([first, then])
    s.add_shared(preset=1)
    results = list(s.run(InlineWorkerPool()))
    assert [(res.task, res.ret, res.excinfo) for res in results] == [
        (first, "first", None), (then, "then", None)
    ]
    # each attempt started afresh; the last one's shared dict reached then
    assert first.starts == [{"preset": 1}] * 3
    assert order == [("then", {"preset": 1, "attempt": 3})]
    attempts = s.attempts(first)
    assert [str(exc.val) if exc else None for exc, _ in attempts] == [
        "first failed attempt 1", "first failed attempt 2", None
    ]
    assert all(seconds is not None for _, seconds in attempts)


def test_the_last_attempt_decides_and_carries_its_exception():
    doomed = flaky("doomed", 5, retries=2, provides=["data"])

    @func_meta(requires=["data"])
    def then():
        return "never"

    s = Sched([doomed, then])
    with pytest.warns(UnrunTasksWarning, match="1 task did not run"):
        (res,) = list(s.run())
    assert res.task is doomed and str(res.excinfo.val) == "doomed failed attempt 3"
    assert len(s.attempts(doomed)) == 3
    assert s.skipped == {then: "requires tag 'data', never provided because "
                               "'doomed' failed"}


def test_only_what_retry_on_names_is_retried():
    picky = flaky("picky", 1, retries=3, retry_on=OSError)  # raises ValueError
    decided = func_meta(retries=3)(
        lambda: (_ for _ in ()).throw(TaskFailError("decided"))
    )
    s = Sched([picky, decided])
    results = {res.task: res for res in s.run()}
    assert results[picky].excinfo.type is ValueError
    assert results[decided].excinfo.type is TaskFailError
    assert len(s.attempts(picky)) == len(s.attempts(decided)) == 1


def test_a_controlled_failure_is_retried_when_retry_on_names_it():
    calls = []

    @func_meta(retries=1, retry_on=(TaskFailError,))
    def maybe():
        calls.append(1)
        if len(calls) == 1:
            raise TaskFailError("not yet")
        return "now"

    s = Sched([maybe])
    assert [res.ret for res in s.run()] == ["now"]
    assert len(s.attempts(maybe)) == 2


def test_each_attempt_is_an_event():
    once = flaky("once", 1, retries=1)
    s = Sched([once])
    events = []
    s.observe(events.append)
    list(s.run(InlineWorkerPool()))
    kinds = [(e.kind, e.name) for e in events
             if e.kind in ("dispatched", "retrying", "finished")]
    assert kinds == [("dispatched", "once"), ("retrying", "once"),
                     ("dispatched", "once"), ("finished", "once")]
    (retrying,) = [e for e in events if e.kind == "retrying"]
    assert str(retrying.res.excinfo.val) == "once failed attempt 1"
    assert retrying.reason == (
        "attempt 1 of 2 failed (ValueError); it runs again at once"
    )


def test_a_retry_waiting_for_its_delay_holds_no_worker_lock_nor_capacity():
    # one worker, one GPU, one lock: while 'first' waits an hour for its
    # retry, 'second' (which needs all three) runs, then cancels it
    seen = []
    first = flaky("first", 1, retries=1, retry_delay=3600, priority=-1,
                  claims=["db"], needs={"gpu": 1})

    @func_meta(claims=["db"], needs={"gpu": 1})
    def second():
        status = s.status()
        seen.append((status.blocked.get(first), status.waiting, status.capacity))
        s.cancel(first)
        return "second"

    s = Sched([first, second], capacity={"gpu": 1})
    results = list(s.run(ThreadWorkerPool(1, spare=0)))
    assert [res.ret for res in results] == ["second"]  # first: no TaskRes
    assert seen == [(("retry",), 1, {"gpu": (1, 1)})]
    assert s.skipped == {first: "cancelled while it waited to be retried"}
    assert [str(exc.val) for exc, _ in s.attempts(first)] == ["first failed attempt 1"]


def test_an_abort_ends_the_wait_for_a_retry():
    patient = flaky("patient", 1, retries=1, retry_delay=3600)
    s = Sched([patient])
    s.observe(lambda event: event.kind == "retrying" and s.abort("enough"))
    assert list(s.run()) == []
    assert s.skipped == {patient: "an attempt failed and it waited to be "
                                  "retried: the run was aborted: enough"}


def test_a_retry_after_its_delay():
    # the delays grow by the backoff; the loop, with nothing in the pool,
    # waits for the first one due (the delays here are short: 5 and 10 ms)
    slow = flaky("slow", 2, retries=2, retry_delay=0.005, retry_backoff=2)
    delays = []
    s = Sched([slow])
    s.observe(lambda event: event.kind == "retrying" and delays.append(event.reason))
    assert [res.ret for res in s.run()] == ["slow"]
    assert delays == [
        "attempt 1 of 3 failed (ValueError); it runs again in 0.005 s",
        "attempt 2 of 3 failed (ValueError); it runs again in 0.01 s",
    ]


def test_under_arun_a_retry_waits_for_its_delay_without_blocking_the_loop():
    # 'patient' waits an hour for its retry; a task on the loop aborts the
    # run once it sees the retry coming (a watchdog thread would otherwise,
    # were the loop blocked), and 'quick' is retried after 10 ms
    patient = flaky("patient", 1, retries=1, retry_delay=3600)
    quick = flaky("quick", 1, retries=1, retry_delay=0.01)
    s = Sched([quick])
    assert [res.ret for res in run_on_a_loop(_collect(s.arun(ThreadWorkerPool(1))))
            ] == ["quick"]
    s = Sched([patient])
    watchdog = threading.Timer(20, s.abort, ("watchdog: the loop was blocked",))

    async def main():
        retrying = asyncio.Event()
        s.observe(lambda event: event.kind == "retrying" and retrying.set())

        async def stop():
            await retrying.wait()
            s.abort("from the loop")

        stopper = asyncio.get_running_loop().create_task(stop())
        results = await _collect(s.arun(ThreadWorkerPool(1)))
        await stopper
        return results

    watchdog.start()
    try:
        assert run_on_a_loop(main()) == []
    finally:
        watchdog.cancel()
        watchdog.join()
    assert s.skipped == {patient: "an attempt failed and it waited to be "
                                  "retried: the run was aborted: from the loop"}


async def _collect(agen):
    return [res async for res in agen]


def test_a_crash_and_a_timeout_count_as_failed_attempts(tmp_path):
    crash = functools.partial(_proc_tasks.crash_the_first_time,
                              path=str(tmp_path / "crash"))
    late = functools.partial(_proc_tasks.overrun_the_first_time,
                             path=str(tmp_path / "late"))
    assign_val(crash, retries=1)
    assign_val(late, retries=1, timeout=0.5)
    s = Sched([crash, late])
    results = {res.task: res for res in s.run(ProcessWorkerPool(2))}
    assert results[crash].ret == results[late].ret == "passed again"
    assert [exc.type if exc else None for exc, _ in s.attempts(crash)] == [
        WorkerCrashError, None
    ]
    assert [exc.type if exc else None for exc, _ in s.attempts(late)] == [
        TaskTimeoutError, None
    ]


@st.composite
def failure_patterns(draw):
    """Tasks in an acyclic graph, each failing its first few attempts."""
    n = draw(st.integers(1, 10))
    specs = []
    for i in range(n):
        requires = draw(st.lists(st.integers(0, i - 1), unique=True, max_size=2)
                        if i else st.just([]))
        specs.append((requires, draw(st.integers(0, 3)), draw(st.integers(0, 3))))
    return specs, draw(st.integers(1, 3))


@settings(max_examples=60, deadline=None)
@given(failure_patterns())
def test_retries_yield_one_result_per_task_and_keep_the_dependency_rules(case):
    specs, workers = case
    lock = threading.Lock()
    log = []  # (event, task index) in the order things happened

    def make(i, failures):
        def fn():
            with lock:
                log.append(("start", i))
                attempt = sum(1 for kind, j in log if kind == "start" and j == i)
            if attempt <= failures:
                raise OSError(f"t{i} attempt {attempt}")
            return i

        fn.__name__ = fn.__qualname__ = f"t{i}"
        return fn

    tasks = []
    for i, (requires, failures, retries) in enumerate(specs):
        tasks.append(func_meta(provides=[i], requires=requires, retries=retries)(
            make(i, failures)
        ))
    s = Sched(tasks)
    with warnings.catch_warnings():
        # tags nobody requires, tasks skipped: beside the point here
        warnings.simplefilter("ignore", PexenWarning)
        results = []
        for res in s.run(ThreadWorkerPool(workers)):
            with lock:
                log.append(("result", tasks.index(res.task)))
            results.append(res)
    passed = set()
    for i, (requires, failures, retries) in enumerate(specs):
        runs = all(r in passed for r in requires)
        if runs and failures <= retries:
            passed.add(i)
    by_task = {tasks.index(res.task): res for res in results}
    assert len(by_task) == len(results)  # one TaskRes per task
    for i, (requires, failures, retries) in enumerate(specs):
        if not all(r in passed for r in requires):
            assert i not in by_task and tasks[i] in s.skipped
            continue
        assert (by_task[i].excinfo is None) == (i in passed)
        assert len(s.attempts(tasks[i])) == min(failures, retries) + 1
        # it started only after each task it requires had yielded its result
        first_start = log.index(("start", i))
        for r in requires:
            assert log.index(("result", r)) < first_start
