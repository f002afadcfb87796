"""Driving a run while it runs (SPEC §8): add_tasks mid-run, pause and resume,
abort, cancel, observe and status, on the inline and thread pools.

Tasks synchronise with Events (no sleeping); another thread, a signal
handler, an observer or the loop body drives the run. The pools' own parts
(resizing, stopping a running task in a process) are in
``tests/pools/test_live_pools.py``; the invariants under random
interleavings in ``tests/test_live_properties.py``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest

from pexen import PexenError, PexenWarning
from pexen.sched import (
    DepcheckError,
    Event,
    MutexError,
    Sched,
    SchedulerError,
    Status,
    TaskCancelledError,
    UnrunTasksWarning,
)
from pexen.sched.meta import assign_val
from pexen.sched.pool import InlineWorkerPool, ThreadWorkerPool
from tests._leaks import poll
from tests._pools import POOL_KINDS

DEADLOCK = 30.0  # seconds: only to turn a deadlock into a failure

# tags provided for tasks that will be added later are required by none at first
pytestmark = pytest.mark.filterwarnings("ignore::pexen.sched.UnusedTagWarning")


def task(name, ret=None, *, exc=None, gate=None, started=None, **fields):
    """A task called *name*: waits for *gate* (after setting *started*), then
    returns *ret* (default: its name) or raises *exc*."""

    def fn():
        if started is not None:
            started.set()
        if gate is not None:
            assert gate.wait(DEADLOCK), "gate never opened"
        if exc is not None:
            raise exc
        return name if ret is None else ret

    fn.__name__ = fn.__qualname__ = name
    if fields:
        assign_val(fn, **fields)
    return fn


def names(results):
    return [res.task.__name__ for res in results]


def in_thread(fn, *args):
    thread = threading.Thread(target=fn, args=args, name="test-driver")
    thread.start()
    return thread


# -- add_tasks during a run --------------------------------------------------------


@pytest.mark.parametrize("pool_kind", ["inline", "thread"])
def test_tasks_added_from_the_loop_body_join_the_run(pool_kind):
    pool = InlineWorkerPool() if pool_kind == "inline" else ThreadWorkerPool(1, 0)
    s = Sched([task("a"), task("b")])
    seen = []
    for res in s.run(pool=pool):
        seen.append(res.ret)
        if res.ret == "a":
            s.add_tasks([task("c"), task("d", priority=-1)])
    assert seen == ["a", "d", "b", "c"]  # the new urgent task goes first
    assert len(list(s.run(pool=pool))) == 4  # and stays for the next run


def test_a_tag_already_provided_counts_as_met_and_its_shared_state_arrives():
    def make(shared):
        shared["made"] = "by make"

    assign_val(make, provides=["built"])
    s = Sched([make, task("other")])
    s.add_shared(preset=1)
    got = {}

    def use(shared):
        got.update(shared)
        return "used"

    assign_val(use, requires=["built"])
    results = []
    for res in s.run(pool=InlineWorkerPool()):
        results.append(res.ret)
        if res.task is make:
            s.add_tasks([use])
    assert results == [None, "other", "used"]
    assert got == {"preset": 1, "made": "by make"}


def test_shared_state_of_finished_providers_arrives_in_the_order_they_finished():
    def first(shared):
        shared.update(k="first", one=1)

    def second(shared):
        shared.update(k="second", two=2)

    assign_val(first, provides=["t"])
    assign_val(second, provides=["u"])
    got = {}

    def late(shared):
        got.update(shared)

    assign_val(late, requires=["t", "u"])
    s = Sched([first, second])
    for res in s.run(pool=InlineWorkerPool()):
        if res.task is second:
            s.add_tasks([late])
    assert got == {"k": "second", "one": 1, "two": 2}


def test_a_task_added_from_another_thread_joins_while_the_loop_waits():
    gate, started = threading.Event(), threading.Event()
    s = Sched([task("slow", gate=gate, started=started)])

    def added():  # it runs while "slow" still waits for it
        gate.set()

    thread = in_thread(lambda: started.wait(DEADLOCK) and s.add_tasks([added]))
    assert names(s.run(pool=ThreadWorkerPool(2, 0))) == ["added", "slow"]
    thread.join()


def test_a_task_added_from_an_observer_joins():
    s = Sched([task("a")])
    added = task("added")
    s.observe(lambda e: e.kind == "dispatched" and s.add_tasks([added]))
    assert names(s.run(pool=InlineWorkerPool())) == ["a", "added"]


def test_adding_a_task_whose_tag_nothing_provides_raises_and_the_run_goes_on():
    s = Sched([task("a"), task("b")])
    orphan = task("orphan", requires=["nowhere"])
    fine = task("fine")
    seen = []
    for res in s.run(pool=InlineWorkerPool()):
        seen.append(res.ret)
        if res.ret == "a":
            with pytest.raises(DepcheckError, match="'nowhere', required by 'orphan'"):
                s.add_tasks([fine, orphan])  # all or nothing
    assert seen == ["a", "b"]
    assert s.skipped == {}
    assert orphan not in s.skipped and fine not in s.skipped
    assert len(list(s.run(pool=InlineWorkerPool()))) == 2  # neither was added


def test_adding_a_new_cycle_raises_naming_it():
    x = task("x", requires=["from_y"], provides=["from_x"])
    y = task("y", requires=["from_x"], provides=["from_y"])
    s = Sched([task("a"), task("b")])
    gen = s.run(pool=InlineWorkerPool())
    next(gen)
    cycle = r"requirement cycle: (x -> y -> x|y -> x -> y)"
    with pytest.raises(DepcheckError, match=cycle) as info:
        s.add_tasks([x, y])
    assert set(info.value.cycle) == {x, y}
    assert names(gen) == ["b"]


def test_adding_a_task_claiming_and_using_one_resource_raises():
    s = Sched([task("a"), task("b")])
    gen = s.run(pool=InlineWorkerPool())
    next(gen)
    with pytest.raises(MutexError, match="both claims and uses 'db'"):
        s.add_tasks([task("bad", claims=["db"], uses=["db"])])
    assert names(gen) == ["b"]


def test_adding_a_priority_that_cannot_be_compared_raises():
    s = Sched([task("a", priority=1), task("b", priority=2)])
    gen = s.run(pool=InlineWorkerPool())
    next(gen)
    with pytest.raises(SchedulerError, match="priorities must be comparable"):
        s.add_tasks([task("odd", priority="high")])
    assert names(gen) == ["b"]


def test_a_task_added_whose_providers_all_failed_is_skipped_with_the_usual_reason():
    broken = task("broken", exc=ValueError("boom"), provides=["t"])
    s = Sched([broken, task("other")])
    late = task("late", requires=["t"])
    with pytest.warns(PexenWarning, match="1 task did not run"):
        for res in s.run(pool=InlineWorkerPool()):
            if res.task is broken:
                s.add_tasks([late])
    assert s.skipped[late] == "requires tag 't', never provided because 'broken' failed"


def test_a_new_task_may_require_a_tag_only_a_new_task_provides():
    s = Sched([task("a")])
    need = task("need", requires=["n"])
    make = task("make", provides=["n"])
    for res in s.run(pool=InlineWorkerPool()):
        if res.ret == "a":
            s.add_tasks([need, make])
    assert s.skipped == {}


def test_adding_to_an_aborted_run_raises():
    s = Sched([task("a"), task("b")])
    gen = s.run(pool=InlineWorkerPool())
    next(gen)
    s.abort("enough")
    with pytest.raises(SchedulerError, match=r"ending \(aborted\)"):
        s.add_tasks([task("late")])
    assert list(gen) == []


def test_adding_to_a_closed_run_raises_while_it_shuts_down():
    gate, started = threading.Event(), threading.Event()
    s = Sched([task("slow", gate=gate, started=started), task("next")])
    gen = s.run(pool=ThreadWorkerPool(2, 0))
    errors = []

    def add_while_closing():
        assert started.wait(DEADLOCK)
        # wait until the generator is being closed (the pool waits for "slow")
        assert poll(lambda: s._live is not None and s._live.closed, DEADLOCK)
        try:
            s.add_tasks([task("late")])
        except SchedulerError as exc:
            errors.append(str(exc))
        gate.set()

    thread = in_thread(add_while_closing)
    res = next(gen)
    assert res.ret == "next"
    gen.close()
    thread.join()
    assert errors and "stopped early" in errors[0]


# -- pause and resume --------------------------------------------------------------


def test_pause_holds_dispatch_and_tasks_in_the_pool_still_finish():
    gate, started = threading.Event(), threading.Event()
    s = Sched([task("running", gate=gate, started=started), task("b"), task("c")])
    statuses = []

    def pause_then_check():
        assert started.wait(DEADLOCK)
        s.pause()
        s.pause()  # idempotent
        assert s.paused
        gate.set()

    thread = in_thread(pause_then_check)
    gen = s.run(pool=ThreadWorkerPool(1, spare=0))
    first = next(gen)  # "running": in the pool when paused, it is still yielded
    assert first.ret == "running"
    thread.join()
    statuses.append(s.status())
    s.resume()
    assert not s.paused
    assert names(gen) == ["b", "c"]
    assert statuses[0].done == 1


def test_a_paused_run_with_nothing_in_flight_blocks_until_resume():
    s = Sched([task("a"), task("b"), task("c")])
    looked = []
    paused = threading.Event()
    s.observe(lambda e: e.kind == "paused" and paused.set())

    def look_then_resume():
        assert paused.wait(DEADLOCK)
        looked.append(s.status())  # the generator blocks meanwhile
        s.resume()

    gen = s.run(pool=ThreadWorkerPool(1, spare=0))
    assert next(gen).ret == "a"
    s.pause()
    thread = in_thread(look_then_resume)
    assert names(gen) == ["b", "c"]
    thread.join()
    (status,) = looked
    assert (status.done, status.running, status.queued, status.ready) == (1, 0, 0, 2)
    assert status.paused


def test_a_run_paused_forever_is_ended_by_abort():
    b = task("b")
    s = Sched([task("a"), b])
    paused = threading.Event()
    s.observe(lambda e: e.kind == "paused" and paused.set())
    thread = in_thread(lambda: paused.wait(DEADLOCK) and s.abort("give up"))
    gen = s.run(pool=ThreadWorkerPool(1, spare=0))
    next(gen)
    s.pause()
    assert list(gen) == []
    thread.join()
    assert dict(s.skipped) == {b: "not started: the run was aborted: give up"}


def test_pause_and_resume_outside_a_run_do_nothing():
    s = Sched([task("a")])
    s.pause()
    assert not s.paused
    s.resume()
    assert names(s.run(pool=InlineWorkerPool())) == ["a"]


# -- abort -------------------------------------------------------------------------


def test_abort_from_the_loop_body_skips_the_rest_with_the_reason():
    s = Sched([task("a"), task("b"), task("c")])
    out = []
    for res in s.run(pool=InlineWorkerPool()):
        out.append(res.ret)
        s.abort("seen enough")
    assert out == ["a"]
    reason = "not started: the run was aborted: seen enough"
    assert list(s.skipped.values()) == [reason] * 2
    status = s.status()
    assert (status.total, status.done, status.skipped) == (3, 1, 2)


def test_abort_without_a_reason_and_outside_a_run():
    s = Sched([task("a"), task("b")])
    assert s.abort("no run: nothing") is False  # no run in progress
    gen = s.run(pool=InlineWorkerPool())
    next(gen)
    assert s.abort() is True
    assert s.abort() is True  # idempotent
    assert list(gen) == []
    assert s.abort() is False
    assert list(s.skipped.values()) == ["not started: the run was aborted"]


def test_abort_from_another_thread_drops_the_queue_and_waits_for_running_tasks():
    gate = threading.Event()
    started = [threading.Event() for _ in range(2)]
    running = [task(f"run{i}", gate=gate, started=started[i]) for i in range(2)]
    queued = [task(f"queued{i}") for i in range(3)]
    later = [task(f"later{i}") for i in range(3)]
    s = Sched([*running, *queued, *later])
    # the running tasks end once the loop has taken the abort in
    s.observe(lambda e: e.kind == "aborting" and gate.set())

    def abort_then_open():
        for event in started:
            assert event.wait(DEADLOCK)
        s.abort("user pressed Cancel")

    thread = in_thread(abort_then_open)
    assert sorted(names(s.run(pool=ThreadWorkerPool(2, spare=3)))) == ["run0", "run1"]
    thread.join()
    for t in queued:
        assert s.skipped[t] == ("dropped from the pool's queue: the run was aborted: "
                                "user pressed Cancel")
    for t in later:
        assert s.skipped[t] == "not started: the run was aborted: user pressed Cancel"


def test_abort_from_an_observer():
    s = Sched([task("a"), task("b"), task("c")])
    s.observe(lambda e: e.kind == "finished" and e.task.__name__ == "b"
              and s.abort("from an observer"))
    assert names(s.run(pool=InlineWorkerPool())) == ["a", "b"]
    assert "from an observer" in s.skipped[next(iter(s.skipped))]


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs pthread_kill")
def test_abort_from_a_signal_handler():
    gate, started = threading.Event(), threading.Event()
    s = Sched([task("slow", gate=gate, started=started), task("never")])
    main = threading.main_thread().ident

    def on_signal(signum, frame):
        s.abort("SIGUSR1")
        gate.set()

    previous = signal.signal(signal.SIGUSR1, on_signal)
    try:
        def send():
            assert started.wait(DEADLOCK)
            signal.pthread_kill(main, signal.SIGUSR1)

        thread = in_thread(send)
        # the main thread blocks in the pool's wait() when the signal comes
        assert names(s.run(pool=ThreadWorkerPool(1, spare=0))) == ["slow"]
        thread.join()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert list(s.skipped.values()) == ["not started: the run was aborted: SIGUSR1"]


def test_abort_force_abandons_running_threads_naming_them():
    gate, started = threading.Event(), threading.Event()
    stuck = task("stuck", gate=gate, started=started)
    s = Sched([stuck, task("never")])
    thread = in_thread(lambda: started.wait(DEADLOCK) and s.abort("now", force=True))
    try:
        # the generator ends without waiting for the stuck task
        assert list(s.run(pool=ThreadWorkerPool(1, spare=0))) == []
        thread.join()
        reason = s.skipped[stuck]
        assert reason.startswith("the run was aborted: now; task 'stuck' was "
                                 "cancelled while it ran; its thread 'pexen-worker-")
        assert "cannot be stopped, so it was abandoned" in reason
    finally:
        gate.set()  # the abandoned thread ends (the leak check waits for it)


# -- cancel ------------------------------------------------------------------------


def test_cancel_a_task_not_yet_dispatched_skips_it_and_its_dependents():
    a = task("a")
    b = task("b", provides=["t"])
    c = task("c", requires=["t"])
    s = Sched([a, b, c])
    out = []
    with pytest.warns(Warning, match=r"1 waiting for a tag of a failed or cancelled"):
        for res in s.run(pool=InlineWorkerPool()):
            out.append(res.ret)
            s.cancel(b)
    assert out == ["a"]
    assert s.skipped[b] == "cancelled before it was dispatched"
    assert s.skipped[c] == "requires tag 't', never provided because 'b' was cancelled"


def test_cancel_a_queued_task_drops_it():
    gate, started = threading.Event(), threading.Event()
    slow = task("slow", gate=gate, started=started)
    queued = task("queued")
    s = Sched([slow, queued, task("after")])

    def cancel_then_open():
        assert started.wait(DEADLOCK)
        s.cancel(queued)
        assert poll(lambda: s.status().skipped == 1, DEADLOCK)
        gate.set()

    thread = in_thread(cancel_then_open)
    assert names(s.run(pool=ThreadWorkerPool(1, spare=1))) == ["slow", "after"]
    thread.join()
    assert s.skipped[queued] == ("cancelled while queued in the pool: dropped "
                                 "before it started")


def test_cancel_a_running_thread_task_yields_task_cancelled_error():
    gate, started = threading.Event(), threading.Event()
    stuck = task("stuck", gate=gate, started=started)
    s = Sched([stuck, task("after")])
    thread = in_thread(lambda: started.wait(DEADLOCK) and s.cancel(stuck))
    try:
        results = list(s.run(pool=ThreadWorkerPool(1, spare=0)))
        thread.join()
        assert names(results) == ["stuck", "after"]
        exc = results[0].excinfo.val
        assert isinstance(exc, TaskCancelledError)
        assert isinstance(exc, PexenError)
        assert "task 'stuck' was cancelled while it ran" in str(exc)
    finally:
        gate.set()


def test_cancel_a_finished_task_or_outside_a_run_does_nothing():
    a, b = task("a"), task("b")
    s = Sched([a, b])
    s.cancel(a)  # no run
    out = []
    for res in s.run(pool=InlineWorkerPool()):
        out.append(res.ret)
        s.cancel(a)  # finished
    assert out == ["a", "b"]
    with pytest.raises(KeyError):
        s.cancel(task("stranger"))


def test_cancel_a_task_parked_on_a_lock_passes_the_lock_on():
    gate, started = threading.Event(), threading.Event()
    holder = task("holder", gate=gate, started=started, claims=["db"])
    parked = task("parked", claims=["db"])
    next_in_line = task("next", claims=["db"])
    s = Sched([holder, parked, next_in_line])

    def cancel_then_open():
        assert started.wait(DEADLOCK)
        s.cancel(parked)
        assert poll(lambda: s.status().skipped == 1, DEADLOCK)
        gate.set()

    thread = in_thread(cancel_then_open)
    assert names(s.run(pool=ThreadWorkerPool(2, spare=0))) == ["holder", "next"]
    thread.join()
    assert s.skipped[parked] == "cancelled before it was dispatched"


# -- observe -----------------------------------------------------------------------


def test_events_of_a_run_in_order():
    events = []
    a, b = task("a"), task("b", exc=ValueError("no"))
    c = task("c", requires=["never"])
    d = task("d", provides=["never"], exc=RuntimeError("x"))
    s = Sched([a, b, d, c])
    s.observe(events.append)
    with pytest.warns(Warning):
        list(s.run(pool=InlineWorkerPool()))
    kinds = [(e.kind, e.name) for e in events]
    assert kinds == [
        ("run-started", None),
        ("dispatched", "a"), ("started", "a"), ("finished", "a"),
        ("dispatched", "b"), ("started", "b"), ("finished", "b"),
        ("dispatched", "d"), ("started", "d"), ("finished", "d"),
        ("skipped", "c"),
        ("run-ended", None),
    ]
    assert all(isinstance(e, Event) for e in events)
    assert events[0].workers == 1
    finished = [e for e in events if e.kind == "finished"]
    assert [e.res.task for e in finished] == [a, b, d]
    assert events[-2].reason == ("requires tag 'never', never provided because "
                                 "'d' failed")
    assert events[-1].status.failed == 2
    times = [e.time for e in events if e.kind != "started"]
    assert times == sorted(times)
    assert all(abs(e.wall - time.time()) < 60 for e in events)
    with pytest.raises(AttributeError):
        events[0].kind = "x"  # frozen


@pytest.mark.parametrize("kind, make_pool", POOL_KINDS, ids=[k for k, _ in POOL_KINDS])
def test_each_task_is_dispatched_then_started_then_finished_in_time(kind, make_pool):
    """Per task, the times of its events rise: a worker that starts a task
    as soon as it is handed over starts it after it was handed over."""
    events = []
    s = Sched([task(f"t{i}") for i in range(20)])
    s.observe(events.append)
    list(s.run(pool=make_pool(2, 2)))
    by_task: dict = {}
    for e in events:
        if e.task is not None:
            by_task.setdefault(e.name, []).append((e.kind, e.time))
    assert len(by_task) == 20
    for name, seen in by_task.items():
        assert [k for k, _ in seen] == ["dispatched", "started", "finished"], name
        assert [t for _, t in seen] == sorted(t for _, t in seen), (name, seen)


def test_events_of_pause_resume_abort():
    events = []
    s = Sched([task("a"), task("b"), task("c")])
    s.observe(lambda e: events.append(e.kind))
    gen = s.run(pool=InlineWorkerPool())
    next(gen)
    s.pause()
    s.resume()
    s.pause()
    thread = in_thread(lambda: poll(lambda: "paused" in events) and s.abort("bye"))
    assert list(gen) == []
    thread.join()
    assert events[4:] == ["paused", "resumed", "paused", "aborting", "skipped",
                          "skipped", "run-ended"]


def test_unregistering_an_observer():
    events = []
    s = Sched([task("a"), task("b")])
    unregister = s.observe(events.append)
    gen = s.run(pool=InlineWorkerPool())
    next(gen)
    unregister()
    unregister()  # twice: nothing
    list(gen)
    assert [e.kind for e in events] == ["run-started", "dispatched", "started",
                                        "finished"]


def test_unregistering_an_observer_object():
    """An object with ``__call__`` (as a ``Journal``) is called through its
    bound method: unregistering it still finds it."""
    class Recorder:
        def __init__(self):
            self.kinds = []

        def __call__(self, event):
            self.kinds.append(event.kind)

    recorder = Recorder()
    s = Sched([task("a"), task("b")])
    unregister = s.observe(recorder)
    gen = s.run(pool=InlineWorkerPool())
    next(gen)
    unregister()
    list(gen)
    assert recorder.kinds == ["run-started", "dispatched", "started", "finished"]


def test_an_observer_hears_only_the_kinds_it_asks_for():
    heard, every = [], []
    s = Sched([task("a"), task("b", exc=ValueError("no"))])
    s.observe(lambda event: heard.append((event.kind, event.name)),
              kinds=["finished", "run-ended"])
    s.observe(lambda event: every.append(event.kind))
    list(s.run(pool=ThreadWorkerPool(2)))
    assert sorted(heard[:2]) == [("finished", "a"), ("finished", "b")]
    assert heard[2:] == [("run-ended", None)]
    assert {"dispatched", "started", "finished"} <= set(every)


def test_an_observer_object_says_which_kinds_it_hears():
    class Ends:
        event_kinds = frozenset({"run-ended"})

        def __init__(self):
            self.kinds = []

        def __call__(self, event):
            self.kinds.append(event.kind)

    told, asked = Ends(), Ends()
    s = Sched([task("a")])
    s.observe(told)
    s.observe(asked, kinds="finished")  # given here: its own kinds do not count
    list(s.run(pool=InlineWorkerPool()))
    assert told.kinds == ["run-ended"]
    assert asked.kinds == ["finished"]


def test_observing_a_kind_that_does_not_exist_names_it():
    with pytest.raises(SchedulerError, match=(
            r"observe\(\): no event is of kind 'finish', 'start' \(in kinds\); the "
            r"kinds are "
            r"'run-started', 'dispatched', 'started', 'finished'")):
        Sched().observe(print, kinds=["finished", "finish", "start"])


def test_a_mock_or_a_proxy_hears_every_kind():
    """Its ``__getattr__`` answers ``event_kinds`` too: the class is asked."""
    from unittest import mock

    loose, magic = mock.Mock(), mock.MagicMock()
    s = Sched([task("a")])
    s.observe(loose)
    s.observe(magic)
    list(s.run(pool=InlineWorkerPool()))
    kinds = ["run-started", "dispatched", "started", "finished", "run-ended"]
    assert [c.args[0].kind for c in loose.call_args_list] == kinds
    assert [c.args[0].kind for c in magic.call_args_list] == kinds


def test_event_kinds_that_are_not_kinds_are_refused_naming_where_they_are():
    class Odd:
        event_kinds = 3

        def __call__(self, event):
            pass

    class Typo(Odd):
        event_kinds = ("finished", "ended")

    with pytest.raises(SchedulerError, match=(
            r"observe\(\): Odd.event_kinds must be a kind of event or several, got 3")):
        Sched().observe(Odd())
    with pytest.raises(SchedulerError, match=(
            r"no event is of kind 'ended' \(in Typo.event_kinds\)")):
        Sched().observe(Typo())


def test_one_callback_registered_twice_is_unregistered_one_registration_at_a_time():
    heard = []
    s = Sched([task("a")])
    first = s.observe(heard.append, kinds=["started"])
    second = s.observe(heard.append, kinds=["finished"])
    second()
    second()  # again: still only its own registration
    list(s.run(pool=InlineWorkerPool()))
    assert [e.kind for e in heard] == ["started"]
    first()
    list(s.run(pool=InlineWorkerPool()))
    assert [e.kind for e in heard] == ["started"]


def test_an_event_nobody_hears_is_not_built(monkeypatch):
    """Only the kinds some observer hears are built: the cost of observing
    (each event a tuple and a call) is paid for those only."""
    built = []
    real_new = tuple.__new__

    def counting(cls, values):
        if cls is Event:
            built.append(values[0])
        return real_new(cls, values)

    from pexen.sched import _live

    monkeypatch.setattr(_live, "_new_tuple", counting)
    s = Sched([task("a"), task("b", exc=ValueError("no"), provides=["x"]),
               task("c", requires=["x"])])
    s.observe(lambda event: None, kinds={"finished", "skipped"})
    gen = s.run(pool=ThreadWorkerPool(2))
    next(gen)
    s.pause()
    s.resume()
    with pytest.warns(UnrunTasksWarning):
        list(gen)
    assert sorted(built) == ["finished", "finished", "skipped"]


def test_unregistering_one_of_two_observers_keeps_the_kinds_of_the_other():
    first, second = [], []
    s = Sched([task("a")])
    unregister = s.observe(first.append, kinds=["started"])
    s.observe(second.append, kinds=["finished"])
    unregister()
    list(s.run(pool=InlineWorkerPool()))
    assert first == []
    assert [e.kind for e in second] == ["finished"]


def test_an_observer_that_raises_is_logged_and_the_run_goes_on(caplog):
    calls = []

    def broken(event):
        calls.append(event.kind)
        raise ZeroDivisionError("observer bug")

    s = Sched([task("a"), task("b")])
    s.observe(broken)
    with caplog.at_level(logging.ERROR, logger="pexen.sched"):
        assert names(s.run(pool=InlineWorkerPool())) == ["a", "b"]
    assert calls.count("finished") == 2
    record = caplog.records[0]
    assert "raised on a 'run-started' event; the run goes on" in record.getMessage()
    assert record.exc_info[0] is ZeroDivisionError


def test_observe_takes_a_callable():
    with pytest.raises(SchedulerError, match=r"observe\(\) takes a callable"):
        Sched().observe("not callable")


def test_a_progress_callback_in_two_lines():
    progress = []
    s = Sched([task(f"t{i}") for i in range(3)])

    def on_progress(finished, total):
        progress.append((finished, total))

    s.observe(lambda e: e.kind == "finished" and on_progress(
        s.status().done + s.status().failed, s.status().total))
    list(s.run(pool=ThreadWorkerPool(2)))
    assert progress == [(1, 3), (2, 3), (3, 3)]


def test_no_event_is_built_without_an_observer(monkeypatch):
    built = []
    real_new = tuple.__new__

    def counting(cls, values):
        if cls is Event:
            built.append(values)
        return real_new(cls, values)

    from pexen.sched import _live

    monkeypatch.setattr(_live, "_new_tuple", counting)
    s = Sched([task("a"), task("b")])
    gen = s.run(pool=InlineWorkerPool())
    next(gen)
    s.pause()
    s.resume()
    list(gen)
    assert built == []


# -- status ------------------------------------------------------------------------


def test_status_counts_add_up_and_name_what_runs_and_what_waits():
    gate, started = threading.Event(), threading.Event()
    holder = task("holder", gate=gate, started=started, claims=["db"], provides=["t"])
    parked = task("parked", claims=["db"])
    waiter = task("waiter", requires=["t"])
    free = [task(f"free{i}") for i in range(3)]
    s = Sched([holder, parked, waiter, *free])
    assert s.status() == s.status()  # outside a run: the last run (none)
    assert s.status().total == 0
    looked = []

    def look():
        assert started.wait(DEADLOCK)
        # the loop body holds free0's result: nothing moves meanwhile
        looked.append(s.status())
        gate.set()

    gen = s.run(pool=ThreadWorkerPool(2, spare=0))
    # holder and parked are first in line; parked waits for "db", so free0 goes
    res = next(gen)
    assert res.ret == "free0"
    thread = in_thread(look)
    thread.join()
    (status,) = looked
    assert isinstance(status, Status)
    assert status.total == 6
    assert (status.done, status.failed, status.skipped) == (1, 0, 0)
    assert (status.running, status.queued) == (1, 0)  # holder
    assert status.waiting == 2  # parked (lock) and waiter (tag)
    assert status.ready == 2  # free1, free2: held back while we hold free0
    counts = (status.done + status.failed + status.running + status.queued
              + status.ready + status.waiting + status.skipped)
    assert counts == status.total
    assert status.locks == {"db": (holder,)}
    assert dict(status.blocked) == {parked: ("db",), waiter: ("t",)}
    assert holder in dict(status.running_tasks)
    assert all(isinstance(since, float) for _task, since in status.running_tasks)
    list(gen)
    last = s.status()
    assert (last.total, last.done, last.running, last.ready, last.waiting) == (
        6, 6, 0, 0, 0)


def test_status_after_every_result_stays_consistent():
    s = Sched([task(f"t{i}", claims=[i % 3]) for i in range(30)])
    for n, _res in enumerate(s.run(pool=ThreadWorkerPool(3)), 1):
        st = s.status()
        assert st.done == n
        assert (st.done + st.failed + st.running + st.queued + st.ready + st.waiting
                + st.skipped) == st.total == 30


def test_status_repr_and_pid_kept():
    s = Sched([os.getpid])
    list(s.run(pool=InlineWorkerPool()))
    assert repr(s.status()) == ("Status(total=1, done=1, failed=0, running=0, "
                                "queued=0, ready=0, waiting=0, skipped=0)")
