"""The scheduler's behaviour (SPEC §1, §3, §4) on every pool, via ``make_pool``.

Tasks here are module-level functions or closures over plain data, so pools
that ship them to other processes (cloudpickle) can run them too. Tests that
synchronise with in-process objects (Events, Barriers, a shared counter) call
``require_in_process(pool)`` first.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import pickle
import select
import signal
import sys
import threading
import time
import traceback
import types
import warnings
from collections.abc import Mapping

import pytest

from pexen import PexenWarning, sched
from pexen.sched import (
    ExceptionInfo,
    PoolError,
    Sched,
    SchedulerError,
    TaskFailError,
    TaskRes,
    _live,
    task_fail_wrap,
)
from pexen.sched._planner import Skip
from pexen.sched._result import TaskMap
from pexen.sched.meta import assign_val, func_meta, has_meta, retrieve_meta

DEADLOCK = 30.0  # seconds: only to turn a deadlock into a failure

STARTED = "handed to the pool, but the run was stopped before its result came back"
NOT_STARTED = "not started: the run was stopped early"


def task(name, ret=None, *, exc=None, **fields):
    """A fresh task called *name*: returns *ret* (default: its name) or raises *exc*."""

    def fn():
        if exc is not None:
            raise exc
        return name if ret is None else ret

    fn.__name__ = fn.__qualname__ = name
    if fields:
        assign_val(fn, **fields)
    return fn


def rets(results):
    return [res.ret for res in results]


def require_in_process(pool):
    """Skip unless *pool* runs tasks in this process (they share our objects).

    A process pool does not, and is not started to find that out (a spawned
    worker costs a fifth of a second); other pools are asked with a probe.
    """
    if isinstance(pool, sched.pool.ProcessWorkerPool):
        pytest.skip("tasks of this pool run in another process")
    probe = Sched([os.getpid])
    if rets(probe.run(pool=pool)) != [os.getpid()]:
        pytest.skip("tasks of this pool run in another process")


def worker_threads():
    return [t.name for t in threading.enumerate() if t.name.startswith("pexen-")]


def count_submits(pool):
    """Record the key of every job the scheduler hands to *pool*."""
    submitted = []
    submit = pool.submit

    def counting(job):
        submitted.append(job[0])
        submit(job)

    pool.submit = counting
    return submitted


# -- the core loop (SPEC §1) -----------------------------------------------------


def greet():
    return "Hello World!"


def test_spec_example(make_pool):
    another = lambda: "Hello Another World!"  # noqa: E731 - as in SPEC §1
    s = sched.Sched([greet, another])
    results = list(s.run(pool=make_pool(4, 2)))
    assert len(results) == 2
    by_task = {res.task: res for res in results}
    assert by_task[greet] == TaskRes(greet, {}, "Hello World!", None)
    assert by_task[another] == TaskRes(another, {}, "Hello Another World!", None)
    assert repr(by_task[greet]).startswith("TaskRes(task=<function greet at ")
    assert repr(by_task[greet]).endswith(
        ">, shared={}, ret='Hello World!', excinfo=None)")
    assert s.skipped == {}


def test_seed_example_default_pool(capsys):
    greet_another = lambda: "Hello Another World!"  # noqa: E731 - as in the seed
    s = sched.Sched([greet, greet_another])
    for result in s.run():
        print(result)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert sorted(line.split(">, ", 1)[1] for line in lines) == [
        "shared={}, ret='Hello Another World!', excinfo=None)",
        "shared={}, ret='Hello World!', excinfo=None)",
    ]
    results = list(s.run())
    assert sorted(rets(results)) == ["Hello Another World!", "Hello World!"]
    assert TaskRes(task=greet, shared={}, ret="Hello World!") in results


def test_seed_example_process_pool(capsys):
    if not hasattr(sched.pool, "ProcessWorkerPool"):
        pytest.skip("no ProcessWorkerPool yet")
    p = sched.pool.ProcessWorkerPool()
    assert (p.workers, p.spare) == (1, 1)
    s = sched.Sched([greet])
    results = s.run(pool=p)
    print(list(results))
    out = capsys.readouterr().out
    assert out.startswith("[TaskRes(task=<function greet at ")
    assert out.endswith(">, shared={}, ret='Hello World!', excinfo=None)]\n")
    p = sched.pool.ProcessWorkerPool(workers=10)
    assert p.workers == 10
    assert rets(s.run(pool=p)) == ["Hello World!"]


def test_default_pool_is_one_named_thread_with_a_spare(monkeypatch):
    gate = threading.Event()
    submitted = []
    original = sched.pool.ThreadWorkerPool.submit

    def counting(self, job):
        submitted.append(job[0])
        original(self, job)

    monkeypatch.setattr(sched.pool.ThreadWorkerPool, "submit", counting)

    def where():
        return threading.current_thread().name

    def waits():
        gate.wait(DEADLOCK)
        return "waited"

    s = sched.Sched([where, waits, *[task(f"t{i}") for i in range(3)]])
    gen = s.run()
    try:
        assert submitted == []  # nothing is dispatched before the first next()
        first = next(gen)
        assert first.task is where
        assert first.ret.startswith("pexen-worker-")
        assert first.ret != threading.current_thread().name
        assert submitted == [0, 1]  # workers=1 + spare=1
    finally:
        gate.set()
    assert rets(gen) == ["waited", "t0", "t1", "t2"]


def test_run_returns_a_generator_that_starts_lazily(make_pool):
    s = sched.Sched([task("a")])
    gen = s.run(pool=make_pool(1, 1))
    assert isinstance(gen, types.GeneratorType)
    gen.close()
    assert rets(s.run(pool=make_pool(1, 1))) == ["a"]


def test_every_task_yields_once(make_pool):
    tasks = [task(f"t{i}", i) for i in range(50)]
    results = list(sched.Sched(tasks).run(pool=make_pool(3, 2)))
    assert sorted(rets(results)) == list(range(50))
    assert {res.task for res in results} == set(tasks)


def test_task_added_twice_runs_once(make_pool):
    a, b = task("a"), task("b")
    s = sched.Sched([a, b, a])
    s.add_tasks([b, a])
    s.add_tasks(iter([a]))
    assert repr(s) == "<Sched with 2 tasks>"
    assert rets(s.run(pool=make_pool(2, 1))) in (["a", "b"], ["b", "a"])


def test_equal_but_distinct_tasks_both_run(make_pool):
    def make():
        return lambda: "same"

    one, two = make(), make()
    assert rets(sched.Sched([one, two]).run(pool=make_pool(1, 1))) == ["same", "same"]


def test_tasks_keyword_and_generator_input(make_pool):
    s = sched.Sched(tasks=(task(f"t{i}") for i in range(3)))
    assert rets(s.run(pool=make_pool(1, 0))) == ["t0", "t1", "t2"]


def test_not_callable_rejected():
    with pytest.raises(SchedulerError, match=r"task 42 is not callable"):
        sched.Sched([greet, 42])
    s = sched.Sched()
    with pytest.raises(SchedulerError, match=r"task 'x' is not callable"):
        s.add_tasks(["x"])


def test_adding_tasks_is_all_or_nothing():
    s = sched.Sched([greet])
    with pytest.raises(SchedulerError, match=r"task 42 is not callable"):
        s.add_tasks([task("a"), 42])
    assert repr(s) == "<Sched with 1 tasks>"


def test_a_single_task_instead_of_a_list_gets_a_hint():
    with pytest.raises(SchedulerError, match=r"single task .*greet.*wrap it in a list"):
        sched.Sched(greet)
    with pytest.raises(SchedulerError, match=r"iterable of tasks, got int 42"):
        sched.Sched().add_tasks(42)


def test_incomparable_priorities_are_refused_before_any_task_runs():
    ran = []
    root = task("root", provides=["x"])
    s = sched.Sched([root, task("late", requires=["x"], priority="high"),
                     task("early", priority=1)])
    message = (r"priorities must be comparable with one another: task '\w+' "
               r"has priority \d and task 'late' has priority 'high' \('<' not")
    with pytest.raises(SchedulerError, match=message):
        s.check()
    with pytest.raises(SchedulerError, match=message):
        ran += s.run(pool=sched.pool.InlineWorkerPool())
    assert ran == []


def test_incomparable_priorities_of_one_type_are_refused():
    s = sched.Sched([task("a", priority=(1, "x")), task("b", priority=(1, 2))])
    with pytest.raises(SchedulerError, match=r"task 'a' has priority \(1, 'x'\)"):
        s.check()


def test_priorities_equal_but_unordered_are_fine():
    # None < None fails, but ties never compare the priorities themselves
    s = sched.Sched([task("a", priority=None), task("b", priority=None)])
    assert rets(s.run(pool=sched.pool.InlineWorkerPool())) == ["a", "b"]


def test_wrong_pool_rejected():
    with pytest.raises(SchedulerError, match=r"pool='threads': expected a WorkerPool"):
        sched.Sched([greet]).run(pool="threads")


# -- order -------------------------------------------------------------------------


def test_insertion_order_with_one_worker(make_pool):
    tasks = [task(name) for name in "zyxabc"]
    assert rets(sched.Sched(tasks).run(pool=make_pool(1, 0))) == list("zyxabc")


def test_priority_order_with_one_worker(make_pool):
    tasks = [task("p3", priority=3), task("p1a", priority=1), task("m1", priority=-1),
             task("p1b", priority=1), task("none"), task("p2", priority=2)]
    assert rets(sched.Sched(tasks).run(pool=make_pool(1, 0))) == [
        "m1", "none", "p1a", "p1b", "p2", "p3"]


@pytest.mark.parametrize("pool_kind", ["inline", "thread1"])
def test_priority_of_tasks_ready_later(pool_kind):
    pool = (sched.pool.InlineWorkerPool() if pool_kind == "inline"
            else sched.pool.ThreadWorkerPool(1, spare=0))
    tasks = [task("root", provides=["x"]), task("a", priority=5),
             task("urgent", requires=["x"], priority=-1), task("b", priority=5),
             task("after", requires=["x"], priority=5)]
    assert rets(sched.Sched(tasks).run(pool=pool)) == [
        "root", "urgent", "a", "b", "after"]


def test_spare_is_dispatched_before_a_later_urgent_task():
    # the seed's caveat: tasks in the spare queue run before later urgent ones
    tasks = [task("root", provides=["x"]), task("a", priority=5),
             task("urgent", requires=["x"], priority=-1), task("b", priority=5)]
    pool = sched.pool.ThreadWorkerPool(1, spare=1)
    assert rets(sched.Sched(tasks).run(pool=pool)) == ["root", "a", "urgent", "b"]


def test_dependencies_respected(make_pool):
    def make(name, needs):
        def fn(shared):
            seen = dict(shared)
            shared[name] = True
            return (name, sorted(k for k in seen if k in needs))

        fn.__name__ = fn.__qualname__ = name
        assign_val(fn, requires=[f"{n}-done" for n in needs],
                   provides=[f"{name}-done"] if name != "e" else [])
        return fn

    graph = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": ["d"]}
    tasks = [make(name, needs) for name, needs in reversed(graph.items())]
    results = list(sched.Sched(tasks).run(pool=make_pool(3, 1)))
    order = [res.ret[0] for res in results]
    for name, needs in graph.items():
        for need in needs:
            assert order.index(need) < order.index(name)
    # each task saw everything it required in its shared dict
    assert all(res.ret[1] == sorted(graph[res.ret[0]]) for res in results)


# -- back-pressure --------------------------------------------------------------


def test_back_pressure_bounds_dispatch(make_pool):
    """At every yield, at most workers + spare tasks are out, for any pool."""
    pool = make_pool(2, 1)
    submitted = count_submits(pool)
    tasks = [task(f"t{i}") for i in range(12)]
    out_at_yield = []
    for n_received, _res in enumerate(sched.Sched(tasks).run(pool=pool)):
        out_at_yield.append(len(submitted) - n_received)
    assert len(out_at_yield) == 12
    assert max(out_at_yield) <= pool.capacity
    assert sorted(submitted) == list(range(12))


def test_holding_a_result_dispatches_nothing(make_pool):
    pool = make_pool(1, 1)
    require_in_process(pool)
    capacity = pool.capacity
    gate = threading.Event()
    started = [threading.Event() for _ in range(6)]

    def make(i):
        def fn():
            started[i].set()
            if i:
                gate.wait(DEADLOCK)
            return i

        return fn

    submitted = count_submits(pool)
    gen = sched.Sched([make(i) for i in range(6)]).run(pool=pool)
    try:
        first = next(gen)
        assert first.ret == 0
        # the caller holds the result: only what was handed out before is out
        assert submitted == list(range(capacity))
        if capacity > 1:
            # the spare keeps the worker busy while the caller holds the result
            assert started[1].wait(DEADLOCK)
        assert not any(ev.is_set() for ev in started[capacity:])
        assert submitted == list(range(capacity))
    finally:
        gate.set()
    assert sorted(rets(gen)) == [1, 2, 3, 4, 5]


def test_holding_a_result_with_one_worker_and_one_spare():
    pool = sched.pool.ThreadWorkerPool(workers=1, spare=1)
    in_second = threading.Event()
    barrier = threading.Barrier(2, timeout=DEADLOCK)
    log = []

    def first():
        return "first"

    def second():
        in_second.set()
        barrier.wait()  # meets the caller, who still holds "first"
        return "second"

    def third():
        log.append("third")
        return "third"

    submitted = count_submits(pool)
    gen = sched.Sched([first, second, third]).run(pool=pool)
    res = next(gen)
    assert res.ret == "first"
    assert in_second.wait(DEADLOCK)
    barrier.wait()
    # second finished while we held the result; third was never handed out
    assert submitted == [0, 1]
    assert log == []
    assert rets(gen) == ["second", "third"]
    assert log == ["third"]


# -- running again, and not twice at once ------------------------------------------


def test_run_again(make_pool):
    pool = make_pool(2, 1)
    tasks = [task("a", provides=["x"]), task("b", requires=["x"]), task("c")]
    s = sched.Sched(tasks)
    first = sorted(rets(s.run(pool=pool)))
    second = sorted(rets(s.run(pool=pool)))
    third = sorted(rets(s.run(pool=make_pool(1, 0))))
    assert first == second == third == ["a", "b", "c"]


def test_run_again_after_a_failure_then_with_it_fixed(make_pool):
    state = {"fail": True}

    def flaky():
        if state["fail"]:
            raise RuntimeError("first time")
        return "ok"

    assign_val(flaky, provides=["x"])
    dep = task("dep", requires=["x"])
    s = sched.Sched([flaky, dep])
    pool = make_pool(1, 1)
    require_in_process(pool)
    with pytest.warns(sched.UnrunTasksWarning, match="1 task did not run"):
        first = list(s.run(pool=pool))
    assert [r.task for r in first] == [flaky]
    assert list(s.skipped) == [dep]
    state["fail"] = False
    assert rets(s.run(pool=pool)) == ["ok", "dep"]
    assert s.skipped == {}


def test_second_run_while_running_raises(make_pool):
    s = sched.Sched([task("a"), task("b")])
    gen = s.run(pool=make_pool(1, 1))
    next(gen)
    with pytest.raises(SchedulerError, match="already running"):
        s.run(pool=make_pool(1, 1))
    s.add_tasks([task("c")])  # joins the run in progress (SPEC §8)
    assert len(list(gen)) == 2
    # once done it runs again, with every task
    assert len(list(s.run(pool=make_pool(1, 1)))) == 3


def test_two_generators_cannot_run_together(make_pool):
    s = sched.Sched([task("a"), task("b")])
    gen1 = s.run(pool=make_pool(1, 1))
    gen2 = s.run(pool=make_pool(1, 1))  # created, not started
    next(gen1)
    with pytest.raises(SchedulerError, match="already running"):
        next(gen2)
    assert len(list(gen1)) == 1


def test_runs_started_from_two_threads_at_once_one_is_refused():
    entered, release = threading.Event(), threading.Event()

    class SlowToStart(sched.pool.ThreadWorkerPool):
        def start(self):
            entered.set()  # the first run is past its checks, not yet running
            assert release.wait(DEADLOCK)
            super().start()

    s = sched.Sched([task("a"), task("b")])
    first = []
    runner = threading.Thread(target=lambda: first.extend(s.run(pool=SlowToStart())))
    runner.start()
    try:
        assert entered.wait(DEADLOCK)
        with pytest.raises(SchedulerError, match="already running"):
            list(s.run(pool=sched.pool.ThreadWorkerPool()))
    finally:
        release.set()
        runner.join(DEADLOCK)
    assert rets(first) == ["a", "b"]


def test_a_pool_that_fails_to_start_leaves_the_sched_reusable():
    class Broken(sched.pool.ThreadWorkerPool):
        def start(self):
            raise OSError("no threads today")

    s = sched.Sched([task("a")])
    with pytest.raises(OSError, match="no threads today"):
        list(s.run(pool=Broken()))
    assert rets(s.run(pool=sched.pool.InlineWorkerPool())) == ["a"]


@pytest.mark.timeout(60)
def test_pool_refuses_a_second_run_and_the_first_goes_on(make_pool):
    pool = make_pool(1, 1)
    s1 = sched.Sched([task(f"a{i}") for i in range(4)])
    gen = s1.run(pool=pool)
    assert next(gen).ret == "a0"
    s2 = sched.Sched([task("b")])
    with pytest.raises(PoolError, match="already serving a run"):
        list(s2.run(pool=pool))
    assert s2.skipped == {}
    assert rets(gen) == ["a1", "a2", "a3"]
    assert rets(s2.run(pool=pool)) == ["b"]


def test_two_scheds_on_two_pools_interleaved(make_pool):
    s1 = sched.Sched([task(f"a{i}") for i in range(3)])
    s2 = sched.Sched([task(f"b{i}") for i in range(3)])
    gen1, gen2 = s1.run(pool=make_pool(1, 0)), s2.run(pool=make_pool(1, 0))
    merged = [res.ret for pair in zip(gen1, gen2, strict=True) for res in pair]
    assert merged == ["a0", "b0", "a1", "b1", "a2", "b2"]


# -- leaving early ------------------------------------------------------------------


def check_stopped(s, tasks, received):
    """The tasks not received are skipped with a stopped reason."""
    skipped = s.skipped
    assert set(skipped) == set(tasks) - set(received)
    assert set(skipped.values()) <= {STARTED, NOT_STARTED}
    assert NOT_STARTED in skipped.values()
    assert worker_threads() == []


def test_break(make_pool):
    tasks = [task(f"t{i}") for i in range(10)]
    s = sched.Sched(tasks)
    received = []
    for res in s.run(pool=make_pool(2, 2)):
        received.append(res.task)
        if len(received) == 2:
            break
    check_stopped(s, tasks, received)


def test_close(make_pool):
    tasks = [task(f"t{i}") for i in range(10)]
    s = sched.Sched(tasks)
    gen = s.run(pool=make_pool(2, 1))
    received = [next(gen).task]
    gen.close()
    check_stopped(s, tasks, received)
    gen.close()  # idempotent
    with pytest.raises(StopIteration):
        next(gen)


def test_exception_in_the_callers_loop(make_pool):
    tasks = [task(f"t{i}") for i in range(10)]
    s = sched.Sched(tasks)
    received = []
    with pytest.raises(LookupError, match="caller"):
        for res in s.run(pool=make_pool(2, 1)):
            received.append(res.task)
            raise LookupError("caller")
    check_stopped(s, tasks, received)


def poll_for(pred, timeout=DEADLOCK):
    """Poll *pred* until it is true; False if *timeout* passes first."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def joining(thread_id):
    """Whether the thread *thread_id* waits for the pool's threads to end.

    That is a ``join()``, the thread pool's ``_await_threads``, which waits
    for its threads' farewells (after the queue was dropped), or the async
    pool's ``_await_shutdown``, which waits for its loop to stop the run
    (after it stopped starting jobs).
    """
    frame = sys._current_frames().get(thread_id)
    while frame is not None:
        if frame.f_code.co_name in ("join", "_await_threads", "_await_shutdown"):
            return True
        frame = frame.f_back
    return False


def test_stopped_while_tasks_run_drops_the_queue(make_pool):
    pool = make_pool(1, 3)
    require_in_process(pool)
    if not pool.spare:
        pytest.skip("no spare tasks queued, nothing to drop")
    gate, running = threading.Event(), threading.Event()
    log = []

    def make(i):
        def fn():
            log.append(i)
            if i == 1:
                running.set()
                gate.wait(DEADLOCK)
            return i

        return fn

    tasks = [make(i) for i in range(6)]
    s = sched.Sched(tasks)
    gen = s.run(pool=pool)
    assert next(gen).ret == 0
    # 1 is running (else, its worker slow to take it up, close() could drop it)
    assert running.wait(DEADLOCK)
    me = threading.get_ident()

    seen_joining = []

    def release_once_joining():
        # close() drops the queued tasks, then joins the worker that runs 1
        seen_joining.append(poll_for(lambda: joining(me)))
        gate.set()

    releaser = threading.Thread(target=release_once_joining)
    releaser.start()
    try:
        gen.close()
    finally:
        gate.set()
        releaser.join()
    assert seen_joining == [True]  # not released by the deadline instead
    # 1 was running; 2 and 3 were queued and dropped; 4 and 5 never handed out
    assert log == [0, 1]
    check_stopped(s, tasks, tasks[:1])
    assert s.skipped[tasks[1]] == STARTED


def test_stop_leaves_no_warning(make_pool):
    tasks = [task("bad", exc=RuntimeError(), provides=["x"]),
             task("dep", requires=["x"]), task("other")]
    s = sched.Sched(tasks)
    gen = s.run(pool=make_pool(1, 0))
    assert next(gen).excinfo is not None
    gen.close()  # no PexenWarning (filterwarnings=error would raise it here)
    assert s.skipped == {tasks[1]: NOT_STARTED, tasks[2]: NOT_STARTED}


def test_keyboard_interrupt_stops_the_run(make_pool):
    pool = make_pool(1, 1)
    main_pid = os.getpid()

    def ctrl_c():
        os.kill(main_pid, signal.SIGINT)
        return "sent"

    tasks = [task("a"), ctrl_c, *[task(f"t{i}") for i in range(5)]]
    s = sched.Sched(tasks)
    received = []
    # The signal may reach a thread that is not running right now; its C
    # handler then marks it for the main thread only once it runs. It also
    # writes to the wakeup fd: waiting on that waits for exactly that moment.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    previous = signal.set_wakeup_fd(wake_w)
    try:
        with pytest.raises(KeyboardInterrupt):
            for res in s.run(pool=pool):
                received.append(res.task)
                if res.task is ctrl_c:
                    select.select([wake_r], [], [], DEADLOCK)
                    for _ in range(1000):  # handled between these bytecodes
                        pass
                    raise AssertionError("SIGINT was not delivered")
    finally:
        signal.set_wakeup_fd(previous)
        os.close(wake_r)
        os.close(wake_w)
    assert ctrl_c not in received or received[-1] is ctrl_c
    check_stopped(s, tasks, received)


# -- failure ----------------------------------------------------------------------


def explode():
    raise ValueError("exploded on purpose")


def test_failed_task_result(make_pool):
    s = sched.Sched([explode])
    (res,) = s.run(pool=make_pool(1, 1))
    assert res.task is explode
    assert res.ret is None
    assert res.shared == {}
    assert isinstance(res.excinfo, ExceptionInfo)
    assert res.excinfo.type is ValueError
    assert isinstance(res.excinfo.val, ValueError)
    assert str(res.excinfo.val) == "exploded on purpose"
    assert isinstance(res.excinfo.tb, types.TracebackType)
    text = "".join(traceback.format_exception(*res.excinfo))
    assert "in explode" in text
    assert 'raise ValueError("exploded on purpose")' in text
    assert text.rstrip().endswith("ValueError: exploded on purpose")
    assert s.skipped == {}


def test_base_exceptions_are_task_failures(make_pool):
    def exits():
        sys.exit(3)

    (res,) = sched.Sched([exits]).run(pool=make_pool(1, 1))
    assert res.excinfo.type is SystemExit
    assert res.excinfo.val.code == 3


def test_result_shapes():
    assert TaskRes._fields == ("task", "shared", "ret", "excinfo")
    assert ExceptionInfo._fields == ("type", "val", "tb")
    res = TaskRes(greet)
    assert res == (greet, {}, None, None)
    assert TaskRes(greet, ret=1).ret == 1


def test_failure_cascade(make_pool):
    tasks = [
        task("bad", exc=RuntimeError("boom"), provides=["built"], claims=["db"]),
        task("uses_build", requires=["built"], provides=["tested"]),
        task("uses_test", requires=["tested"]),
        task("rival", claims=["db"]),
        task("reader", uses=["db"]),
        task("free", priority=5),
    ]
    s = sched.Sched(tasks)
    message = (r"^4 tasks did not run \(2 waiting for a lock, "
               r"2 waiting for a tag of a failed task\); Sched.skipped says why$")
    with pytest.warns(PexenWarning, match=message):
        results = list(s.run(pool=make_pool(1, 0)))
    assert [r.task.__name__ for r in results] == ["bad", "free"]
    assert results[0].excinfo.type is RuntimeError
    by_name = {t.__name__: reason for t, reason in s.skipped.items()}
    assert by_name == {
        "uses_build": "requires tag 'built', never provided because 'bad' failed",
        "uses_test": "requires tag 'tested', never provided because 'bad' failed",
        "rival": "waits for lock 'db', held because 'bad' failed",
        "reader": "waits for lock 'db', held because 'bad' failed",
    }


def test_lock_kept_only_for_tasks_that_had_not_run(make_pool):
    # rival comes first: it runs before bad takes the lock and keeps it
    tasks = [task("rival", claims=["db"]), task("bad", exc=OSError(), claims=["db"]),
             task("late", claims=["db"], priority=1)]
    s = sched.Sched(tasks)
    with pytest.warns(PexenWarning, match=r"^1 task did not run \(1 waiting for a "):
        results = list(s.run(pool=make_pool(1, 0)))
    assert [r.task.__name__ for r in results] == ["rival", "bad"]
    assert s.skipped == {tasks[2]: "waits for lock 'db', held because 'bad' failed"}


def test_metadata_is_read_once_when_the_run_starts(make_pool):
    pool = make_pool(1, 0)
    require_in_process(pool)  # the tasks change metadata objects of this process

    @func_meta(provides=["built"], kwargs={"level": 1})
    def consumer(*, level):
        return level

    def provider():
        # all too late for this run: it goes by what the metadata said at run()
        retrieve_meta(provider).provides.clear()
        meta = retrieve_meta(consumer)
        meta.requires.add("never provided")
        meta.kwargs["level"] = 2
        meta.priority = -1
        assign_val(last, requires=["never provided"])
        return "provided"

    assign_val(provider, provides=["built"])
    assign_val(consumer, requires=["built"], provides=set())
    last = task("last", priority=1)
    s = sched.Sched([provider, consumer, last])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "did not run" warning either
        assert rets(s.run(pool=pool)) == ["provided", 1, "last"]
    assert s.skipped == {}


def test_skip_warning_counts_what_skipped_says():
    def culprit(name):
        return (name,)

    skips = [
        Skip(task("a"), "tag", culprit("bad"), "requires tag 'x', never provided "
             "because 'bad' failed"),
        Skip(task("b"), "lock", culprit("bad"), "waits for lock 'r', held because "
             "'bad' failed"),
        Skip(task("c"), "tag", (), "requires tag 'y', never provided (no failed "
             "task found)"),
        Skip(task("d"), "tag", culprit("worse"), "requires tag 'z', never provided "
             "because 'worse' failed"),
    ]
    message = (r"^4 tasks did not run \(1 waiting for a lock, 2 waiting for a tag of "
               r"a failed task; 1 waiting for a tag with no failed task found\); "
               r"Sched.skipped says why$")
    with pytest.warns(sched.UnrunTasksWarning, match=message):
        _live._warn_skipped(skips)


def test_skip_warning_points_at_the_caller(make_pool):
    s = sched.Sched([task("bad", exc=OSError(), provides=["x"]),
                     task("w", requires=["x"])])
    with pytest.warns(PexenWarning, match="1 task did not run") as record:
        list(s.run(pool=make_pool(1, 1)))
    # record holds other warnings too (fork's on Python 3.12+)
    (warning,) = [w for w in record if issubclass(w.category, PexenWarning)]
    assert warning.filename == __file__


def test_skipped_is_a_read_only_mapping(make_pool):
    bad, waiter = task("bad", exc=OSError(), provides=["x"]), task("w", requires=["x"])
    s = sched.Sched([bad, waiter])
    with pytest.warns(PexenWarning):
        list(s.run(pool=make_pool(1, 1)))
    skipped = s.skipped
    assert isinstance(skipped, Mapping)
    assert len(skipped) == 1
    assert waiter in skipped
    assert bad not in skipped
    assert list(skipped) == [waiter]
    assert skipped[waiter].startswith("requires tag 'x'")
    assert skipped == {waiter: skipped[waiter]}
    assert dict(skipped) == {waiter: skipped[waiter]}
    with pytest.raises(KeyError):
        skipped[bad]
    with pytest.raises(TypeError):
        skipped[bad] = "x"
    assert repr(skipped) == f"{{{waiter!r}: {skipped[waiter]!r}}}"


@dataclasses.dataclass
class CallableRecord:
    """A callable dataclass instance: equal by value, so not hashable."""

    name: str
    fail: bool = False

    def __call__(self):
        if self.fail:
            raise RuntimeError(self.name)
        return self.name


def test_unhashable_tasks(make_pool):
    bad = CallableRecord("bad", fail=True)
    first, second = CallableRecord("dep"), CallableRecord("dep")
    assert first == second
    assign_val(bad, provides=["x"])
    assign_val(first, requires=["x"])
    assign_val(second, requires=["x"])
    s = sched.Sched([bad, first, second, CallableRecord("ok")])
    with pytest.warns(PexenWarning, match="^2 tasks did not run"):
        results = list(s.run(pool=make_pool(1, 1)))
    assert [r.task.name for r in results] == ["bad", "ok"]
    # equal but distinct tasks keep an entry each
    assert len(s.skipped) == 2
    assert [task is first for task in s.skipped] in ([True, False], [False, True])
    assert s.skipped[first] == s.skipped[second]
    assert s.skipped[first].endswith(
        "because \"CallableRecord(name='bad', fail=True)\" failed")
    gen = s.run(pool=make_pool(1, 1))
    next(gen)
    assert len(s.in_flight) <= 1
    gen.close()
    assert len(s.skipped) == 3


class Steps:
    """Bound methods as tasks: ``steps.build`` makes a new method object each time."""

    def __init__(self, name):
        self.name = name

    @func_meta(provides=["built"])
    def build(self):
        raise RuntimeError(f"{self.name} cannot build")

    @func_meta(requires=["built"])
    def test(self):
        return "tested"

    def lint(self):
        return f"linted {self.name}"


def test_a_bound_method_added_twice_is_one_task(make_pool):
    steps, other = Steps("a"), Steps("b")
    first_lint = steps.lint
    assert first_lint == steps.lint and first_lint is not steps.lint
    test_added = steps.test
    s = sched.Sched([first_lint, steps.lint, steps.build, test_added])
    s.add_tasks([steps.lint, steps.build, other.lint])  # other's is another task
    assert repr(s) == "<Sched with 4 tasks>"
    with pytest.warns(PexenWarning, match="^1 task did not run"):
        results = list(s.run(pool=make_pool(1, 1)))
    assert [res.ret for res in results] == ["linted a", None, "linted b"]
    assert results[0].task is first_lint  # the first object added
    # a fresh steps.test finds the entry of the one added
    assert steps.test in s.skipped and other.test not in s.skipped
    assert s.skipped[steps.test] == (
        "requires tag 'built', never provided because 'Steps.build' failed"
    )
    [skipped] = s.skipped
    assert skipped is test_added
    with pytest.raises(KeyError):
        s.skipped[other.test]


def test_task_maps_find_a_bound_method_by_its_object_and_function():
    steps = Steps("a")
    found = TaskMap([(steps.lint, 1), (Steps("a").lint, 2)])
    assert len(found) == 2 and found[steps.lint] == 1
    assert steps.build not in found and Steps.lint not in found


def test_in_flight_while_holding_a_result(make_pool):
    first, second = CallableRecord("one"), CallableRecord("two")
    pool = make_pool(1, 1)
    s = sched.Sched([first, second, CallableRecord("three")])
    assert len(s.in_flight) == 0
    gen = s.run(pool=pool)
    assert next(gen).task is first
    # the held result is no longer out; the spare (if any) still is
    assert first not in s.in_flight
    assert list(s.in_flight) == [second][:pool.spare]
    assert all(isinstance(when, float) for when in s.in_flight.values())
    assert len(list(gen)) == 2
    assert len(s.in_flight) == 0


@pytest.mark.parametrize(
    ("deps_ok", "locks_ok"), list(itertools.product([True, False], repeat=2))
)
def test_task_fail_error_options(make_pool, deps_ok, locks_ok):
    tasks = [
        task("ctl", exc=TaskFailError("controlled", deps_ok=deps_ok, locks_ok=locks_ok),
             provides=["x"], claims=["r"]),
        task("dep", requires=["x"]),
        task("rival", claims=["r"]),
    ]
    expected_run = {"ctl"} | ({"dep"} if deps_ok else set()) | (
        {"rival"} if locks_ok else set())
    s = sched.Sched(tasks)
    if deps_ok and locks_ok:
        results = list(s.run(pool=make_pool(1, 1)))
    else:
        n_unrun = 3 - len(expected_run)
        with pytest.warns(PexenWarning, match=f"^{n_unrun} tasks? did not run"):
            results = list(s.run(pool=make_pool(1, 1)))
    assert {r.task.__name__ for r in results} == expected_run
    (ctl_res,) = [r for r in results if r.task is tasks[0]]
    assert ctl_res.excinfo.type is TaskFailError
    assert (ctl_res.excinfo.val.deps_ok, ctl_res.excinfo.val.locks_ok) == (
        deps_ok, locks_ok)
    skipped = {t.__name__: reason for t, reason in s.skipped.items()}
    assert set(skipped) == {"dep", "rival"} - expected_run
    if not deps_ok:
        assert skipped["dep"] == "requires tag 'x', never provided because 'ctl' failed"
    if not locks_ok:
        assert skipped["rival"] == "waits for lock 'r', held because 'ctl' failed"


class MyFail(TaskFailError):
    """A named controlled failure."""


def test_task_fail_error_pickles():
    for exc in (TaskFailError("m", deps_ok=False), MyFail("n", 1, locks_ok=False)):
        copy = pickle.loads(pickle.dumps(exc))
        assert type(copy) is type(exc)
        assert copy.args == exc.args
        assert (copy.deps_ok, copy.locks_ok) == (exc.deps_ok, exc.locks_ok)
    assert TaskFailError().deps_ok and TaskFailError().locks_ok


def test_task_fail_error_subclass_in_a_run(make_pool):
    tasks = [task("ctl", exc=MyFail("meh", locks_ok=False), provides=["x"], uses=["r"]),
             task("dep", requires=["x"], uses=["r"]), task("writer", claims=["r"])]
    s = sched.Sched(tasks)
    with pytest.warns(PexenWarning, match="1 task did not run"):
        results = list(s.run(pool=make_pool(1, 0)))
    assert [r.task.__name__ for r in results] == ["ctl", "dep"]
    assert results[0].excinfo.type is MyFail
    assert s.skipped == {tasks[2]: "waits for lock 'r', held because 'ctl' failed"}


# -- task_fail_wrap ---------------------------------------------------------------


def test_task_fail_wrap_bare(make_pool):
    @task_fail_wrap
    @func_meta(provides=["x"], claims=["r"])
    def wrapped():
        raise KeyError("inner")

    dep, rival = task("dep", requires=["x"]), task("rival", claims=["r"])
    results = list(sched.Sched([wrapped, dep, rival]).run(pool=make_pool(1, 1)))
    assert {r.task for r in results} == {wrapped, dep, rival}
    (res,) = [r for r in results if r.task is wrapped]
    exc = res.excinfo.val
    assert type(exc) is TaskFailError
    assert str(exc) == "KeyError: 'inner'"
    assert isinstance(exc.__cause__, KeyError)
    assert exc.deps_ok and exc.locks_ok
    assert wrapped.__name__ == "wrapped"


def test_task_fail_wrap_with_options(make_pool):
    @task_fail_wrap(deps_ok=False, reraise=MyFail)
    def wrapped(shared):
        shared["seen"] = True
        raise ValueError("no")

    assign_val(wrapped, provides=["x"], claims=["r"])
    dep, rival = task("dep", requires=["x"]), task("rival", claims=["r"])
    s = sched.Sched([wrapped, dep, rival])
    with pytest.warns(PexenWarning, match="1 task did not run"):
        results = list(s.run(pool=make_pool(1, 1)))
    assert [r.task for r in results] == [wrapped, rival]
    exc = results[0].excinfo.val
    assert type(exc) is MyFail
    assert (exc.deps_ok, exc.locks_ok) == (False, True)
    assert results[0].shared == {"seen": True}
    assert s.skipped == {
        dep: "requires tag 'x', never provided because "
             "'test_task_fail_wrap_with_options.<locals>.wrapped' failed"}


def test_task_fail_wrap_passes_success_and_metadata_through():
    @func_meta(kwargs={"n": 2})
    def base(shared, n):
        return n * 2

    wrapped = task_fail_wrap(locks_ok=False)(base)
    assert has_meta(wrapped)
    assert wrapped({}, n=3) == 6
    (res,) = sched.Sched([wrapped]).run(pool=sched.pool.InlineWorkerPool())
    assert res.ret == 4
    assert res.excinfo is None


def test_task_fail_wrap_keeps_task_fail_errors_and_base_exceptions():
    @task_fail_wrap(deps_ok=True)
    def own():
        raise MyFail("own", deps_ok=False)

    @task_fail_wrap
    def exits():
        raise SystemExit(1)

    with pytest.raises(MyFail) as info:
        own()
    assert info.value.deps_ok is False
    with pytest.raises(SystemExit):
        exits()


@pytest.mark.parametrize("bad", [ValueError, TaskFailError("x"), "MyFail", None])
def test_task_fail_wrap_reraise_must_be_a_subclass(bad):
    with pytest.raises(TypeError, match=r"reraise=.*: expected a TaskFailError sub"):
        task_fail_wrap(reraise=bad)


# -- shared state ----------------------------------------------------------------


def test_add_shared_presets(make_pool):
    def reader(shared):
        return dict(shared)

    def writer(shared):
        seen = dict(shared)
        shared["count"] = 99
        return seen

    s = sched.Sched([writer, reader])
    s.add_shared(count=1, name="x")
    s.add_shared(count=2)
    results = {r.task: r for r in s.run(pool=make_pool(2, 1))}
    assert results[writer].ret == {"count": 2, "name": "x"}
    assert results[writer].shared == {"count": 99, "name": "x"}
    # writer is no provider of reader's: its change does not travel
    assert results[reader].ret == {"count": 2, "name": "x"}
    assert results[reader].shared == {"count": 2, "name": "x"}


def test_add_shared_between_runs(make_pool):
    def reader(shared):
        return dict(shared)

    s = sched.Sched([reader])
    assert rets(s.run(pool=make_pool(1, 1))) == [{}]
    s.add_shared(k=1)
    assert rets(s.run(pool=make_pool(1, 1))) == [{"k": 1}]


def test_shared_goes_to_dependents_only(make_pool):
    def provider(shared):
        shared["from_provider"] = "hello"
        shared["base"] = "changed"

    def dependent(shared):
        seen = dict(shared)
        shared["from_dependent"] = 1
        return seen

    def grandchild(shared):
        return dict(shared)

    def bystander(shared):
        return dict(shared)

    def other_provider(shared):
        shared["other"] = 1

    assign_val(provider, provides=["p"])
    assign_val(dependent, requires=["p"], provides=["d"])
    assign_val(grandchild, requires=["d"])
    assign_val(other_provider, provides=["o"])
    assign_val(bystander, requires=["o"])
    s = sched.Sched([grandchild, bystander, dependent, provider, other_provider])
    s.add_shared(base="preset")
    results = {r.task: r for r in s.run(pool=make_pool(2, 1))}
    assert results[provider].shared == {"base": "changed", "from_provider": "hello"}
    assert results[dependent].ret == {"base": "changed", "from_provider": "hello"}
    assert results[grandchild].ret == {"base": "changed", "from_provider": "hello",
                                       "from_dependent": 1}
    assert results[bystander].ret == {"base": "preset", "other": 1}


def test_shared_from_a_failed_provider(make_pool):
    def ctl(shared):
        shared["partial"] = 1
        raise TaskFailError("half done")

    def plain_fail(shared):
        shared["lost"] = 1
        raise RuntimeError

    def alt(shared):
        shared["alt"] = 1

    def after_ctl(shared):
        return dict(shared)

    def after_plain(shared):
        return dict(shared)

    assign_val(ctl, provides=["c"])
    assign_val(plain_fail, provides=["p"])
    assign_val(alt, provides=["p"])
    assign_val(after_ctl, requires=["c"])
    assign_val(after_plain, requires=["p"])
    s = sched.Sched([ctl, plain_fail, alt, after_ctl, after_plain])
    results = {r.task: r for r in s.run(pool=make_pool(1, 0))}
    assert results[plain_fail].shared == {"lost": 1}
    assert results[after_ctl].ret == {"partial": 1}
    assert results[after_plain].ret == {"alt": 1}


def test_shared_with_kwargs(make_pool):
    @func_meta(kwargs={"n": 3}, provides=["x"])
    def producer(shared, n):
        shared["items"] = list(range(n))

    @func_meta(kwargs={"scale": 10}, requires=["x"])
    def consumer(shared, *, scale):
        return [i * scale for i in shared["items"]]

    results = list(sched.Sched([consumer, producer]).run(pool=make_pool(1, 1)))
    assert rets(results) == [None, [0, 10, 20]]


# -- locks on parallel workers ----------------------------------------------------


def test_claims_never_overlap(make_pool):
    pool = make_pool(4, 2)
    require_in_process(pool)
    clock = itertools.count()
    clock_lock = threading.Lock()
    intervals = {}

    def tick():
        with clock_lock:
            return next(clock)

    def make(name, **fields):
        def fn():
            start = tick()
            for _ in range(200):  # some work, so that overlaps could show
                pass
            intervals[name] = (start, tick())

        fn.__name__ = fn.__qualname__ = name
        assign_val(fn, **fields)
        return fn

    tasks = []
    for i in range(8):
        tasks.append(make(f"claim_a{i}", claims=["A"]))
        tasks.append(make(f"use_a{i}", uses=["A"]))
        tasks.append(make(f"claim_b{i}", claims=["B"], uses=["C"]))
        tasks.append(make(f"claim_ab{i}", claims=["A", "B"]))
        tasks.append(make(f"free{i}"))
    assert len(list(sched.Sched(tasks).run(pool=pool))) == len(tasks)
    holders = {
        res: [(t.__name__, mode) for t in tasks
              for mode, tags in (("claim", retrieve_meta(t).claims),
                                 ("use", retrieve_meta(t).uses))
              if res in tags]
        for res in "ABC"
    }
    for pairs in holders.values():
        for (n1, m1), (n2, m2) in itertools.combinations(pairs, 2):
            if m1 == m2 == "use":
                continue
            (s1, e1), (s2, e2) = intervals[n1], intervals[n2]
            assert e1 < s2 or e2 < s1, (n1, n2, intervals[n1], intervals[n2])


def test_users_share_a_resource(make_pool):
    pool = make_pool(3, 0)
    require_in_process(pool)
    if pool.workers < 3:
        pytest.skip("needs three workers")
    barrier = threading.Barrier(3, timeout=DEADLOCK)

    def make(name):
        def fn():
            barrier.wait()  # only passes if all three users run at once
            return name

        fn.__name__ = fn.__qualname__ = name
        assign_val(fn, uses=["db"])
        return fn

    tasks = [make(f"u{i}") for i in range(3)]
    results = list(sched.Sched(tasks).run(pool=pool))
    assert all(r.excinfo is None for r in results), [r.excinfo for r in results]
    assert sorted(rets(results)) == ["u0", "u1", "u2"]


def test_parked_claimer_does_not_block_others(make_pool):
    pool = make_pool(2, 0)
    require_in_process(pool)
    if pool.workers < 2:
        pytest.skip("needs two workers")
    holding = threading.Event()
    release = threading.Event()

    def holder():
        holding.set()
        release.wait(DEADLOCK)
        return "holder"

    def free():
        # runs while holder has the lock and rival is parked
        release.set()
        return "free"

    assign_val(holder, claims=["r"])
    rival = task("rival", claims=["r"])
    results = rets(sched.Sched([holder, rival, free]).run(pool=pool))
    assert holding.is_set()
    assert results.index("free") < results.index("rival")
    assert results.index("holder") < results.index("rival")


# -- many tasks -----------------------------------------------------------------------


# Long and wide next to the pool's 8 places; one round trip per link, which a
# Dask cluster makes in milliseconds (the volume a pipe holds: the process
# pool's tickets test, 9,000 tasks).
MANY = 100


def test_a_long_chain_and_a_wide_fan(make_pool):
    chain = [task(f"c{i}", i, requires=[i - 1] if i else [], provides=[i])
             for i in range(MANY)]
    fan = [task(f"f{i}", -1, requires=[MANY - 1]) for i in range(MANY)]
    results = list(sched.Sched(fan + chain).run(pool=make_pool(4, 4)))
    order = rets(results)
    assert order[:MANY] == list(range(MANY))
    assert order[MANY:] == [-1] * MANY
