"""Counted resources (SPEC §11): the Capacity bookkeeping, driven by hand."""

from __future__ import annotations

import functools
import re
import sys
import threading
import time
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pexen.sched import MutexError, Sched, SchedulerError, TaskFailError
from pexen.sched._capacity import Capacity, Gate, check_capacity, check_needs
from pexen.sched._planner import Planner
from pexen.sched._result import ExceptionInfo
from pexen.sched.meta import assign_val, func_meta
from pexen.sched.pool import ProcessWorkerPool, ThreadWorkerPool
from tests import _proc_tasks


def excinfo(exc):
    """An ``ExceptionInfo`` as a pool reports it for *exc*."""
    try:
        raise exc
    except BaseException:
        return ExceptionInfo(*sys.exc_info())


class Info:
    """What Capacity reads of a planner record, through a gate."""

    def __init__(self, seq: int, rank: object) -> None:
        self.seq, self.rank = seq, rank

        def task():
            pass

        task.__qualname__ = f"t{seq}"
        self.task = task


def needing(seq: int, rank: object = 0, **needs: object) -> Gate:
    """The gate of a task *seq* of *rank* needing *needs*."""
    info = Info(seq, rank)
    info.gate = Gate(info, needs)
    return info.gate


def test_take_and_give_back():
    cap = Capacity(check_capacity({"gpu": 2}))
    a, b, c = needing(0, gpu=1), needing(1, gpu=1), needing(2, gpu=1)
    for rec in (a, b):
        assert cap.fits(rec)
        cap.take(rec)
    assert not cap.fits(c)
    assert cap.in_use() == {"gpu": (2, 2)}
    assert cap.give(a) == []  # nobody waits
    assert cap.fits(c)


def test_a_parked_task_is_woken_when_enough_is_given_back():
    cap = Capacity({"gpu": 2})
    runs = [needing(0, gpu=1), needing(1, gpu=1)]
    for rec in runs:
        cap.take(rec)
    big = needing(2, gpu=2)
    assert cap.lacks(big) == "gpu"
    cap.park(big)
    assert cap.give(runs[0]) == []  # one free: not enough for it
    assert cap.give(runs[1]) == [big]
    # woken, it holds what it needs: nobody else counts it as free
    assert big.held and not big.parked
    assert cap.in_use() == {"gpu": (2, 2)}


def test_the_first_in_line_reserves_what_it_needs():
    # a stream of small tasks, behind a big one, does not starve it
    cap = Capacity({"gpu": 2})
    running = needing(0, gpu=1)
    cap.take(running)
    big = needing(1, gpu=2)
    cap.park(big)
    small = needing(2, gpu=1)
    assert not cap.fits(small)  # one is free, but the big one is first in line
    assert cap.give(running) == [big]
    assert cap.in_use() == {"gpu": (2, 2)}


def test_a_task_ahead_of_the_first_in_line_may_go():
    cap = Capacity({"gpu": 2})
    running = needing(5, gpu=1)
    cap.take(running)
    big = needing(3, rank=1, gpu=2)
    cap.park(big)
    urgent = needing(4, rank=0, gpu=1)  # a lower rank: before the big one
    assert cap.fits(urgent)


def test_beside_a_reservation_others_fit():
    # the first in line lacks memory, not GPUs: a GPU task fits beside it
    cap = Capacity({"gpu": 3, "mem": 8})
    hog = needing(0, mem=8)
    cap.take(hog)
    first = needing(1, gpu=2, mem=4)
    assert cap.lacks(first) == "mem"
    cap.park(first)
    gpu_only = needing(2, gpu=1)
    assert cap.fits(gpu_only)
    greedy = needing(3, gpu=2)
    assert not cap.fits(greedy)  # 3 free, 2 of them reserved


def test_parked_tasks_behind_a_blocked_first_in_line_are_woken_beside_it():
    cap = Capacity({"gpu": 2, "mem": 8})
    hog, gpu_user = needing(0, mem=8), needing(1, gpu=2)
    cap.take(hog)
    cap.take(gpu_user)
    first = needing(2, gpu=1, mem=4)  # lacks both
    behind = needing(3, gpu=1)
    cap.park(first)
    cap.park(behind)
    # the GPUs come back: the first in line still lacks memory, and the task
    # behind it fits beside its reservation of one GPU
    assert cap.give(gpu_user) == [behind]
    assert first.parked and cap.lacks(first) == "mem"
    assert cap.give(hog) == [first]


def test_a_woken_task_leaves_every_queue_and_the_next_in_line_moves_up():
    cap = Capacity({"gpu": 1, "mem": 1})
    g, m = needing(0, gpu=1), needing(1, mem=1)
    cap.take(g)
    cap.take(m)
    both = needing(2, gpu=1, mem=1)
    mem_next = needing(3, mem=1)
    cap.park(both)
    cap.park(mem_next)
    assert cap.give(m) == []  # both lacks the GPU; it reserves the memory
    assert cap.give(g) == [both]  # and it holds the memory: mem_next waits
    assert cap.give(both) == [mem_next]


def test_one_give_back_wakes_only_what_it_makes_room_for():
    cap = Capacity({"gpu": 1})
    running = needing(0, gpu=1)
    cap.take(running)
    queue = [needing(i, gpu=1) for i in range(1, 1001)]
    for rec in queue:
        cap.park(rec)
    assert cap.give(running) == [queue[0]]
    assert cap.give(queue[0]) == [queue[1]]


def test_unpark_wakes_those_behind():
    cap = Capacity({"gpu": 2})
    running = needing(0, gpu=1)
    cap.take(running)
    big, small = needing(1, gpu=2), needing(2, gpu=1)
    cap.park(big)
    cap.park(small)
    assert cap.unpark(big) == [small]
    assert cap.unpark(big) == []  # not parked any more


def test_fractional_amounts_add_up_exactly():
    cap = Capacity(check_capacity({"mem": 1.0}))
    recs = [needing(i, mem=0.1) for i in range(10)]
    for _ in range(3):
        for rec in recs:
            assert cap.fits(rec)
            cap.take(rec)
        for rec in recs:
            cap.give(rec)
    whole = needing(10, mem=1.0)
    assert cap.fits(whole)  # floats would leave 1.0 - 1e-16 free
    assert cap.in_use() == {"mem": (0, 1)}
    cap.take(recs[0])
    assert cap.in_use() == {"mem": (0.1, 1)}
    assert cap.free["mem"] == Fraction(9, 10)


@pytest.mark.parametrize(
    ("capacity", "message"),
    [
        (["gpu"], "capacity=['gpu']: expected a mapping of resource -> amount, as "
                  "capacity={'gpu': 2, 'mem_gb': 16}; got list"),
        ({"gpu": 0}, "capacity={'gpu': 0}: the capacity of 'gpu' must be a "
                     "positive, finite number, not 0"),
        ({"gpu": float("inf")}, "must be a positive, finite number, not inf"),
        ({"gpu": True}, "must be a positive, finite number, not True"),
        ({"gpu": "2"}, "must be a positive, finite number, not '2'"),
        ({"workers": 2}, "capacity={'workers': 2}: 'workers' is the pool's worker "
                         "count (a task with needs={'workers': 4} takes 4 of them); "
                         "set the pool's workers instead, or name the resource "
                         "otherwise"),
    ],
    ids=repr,
)
def test_capacity_checked(capacity, message):
    with pytest.raises(SchedulerError, match=re.escape(message)):
        check_capacity(capacity)


def test_capacity_kept_exactly():
    assert check_capacity(None) == {}
    checked = check_capacity({"gpu": 2, "mem": 0.5, "big": 10**30})
    assert checked == {"gpu": 2, "mem": Fraction(1, 2), "big": 10**30}
    assert type(checked["gpu"]) is int


def test_needs_beyond_capacity_or_without_one_are_refused_naming_both():
    with pytest.raises(MutexError, match=r"^task 't0' needs 3 of 'gpu', more than "
                       r"its capacity of 2; give 'gpu' more capacity or the task "
                       r"a smaller need$"):
        check_needs([needing(0, gpu=3).info], {"gpu": 2})
    with pytest.raises(MutexError, match=r"^task 't1' needs 8 of 'mem', which has "
                       r"no capacity; say how much there is: "
                       r"Sched\(capacity=\{'mem': \.\.\.\}\), or pexen run "
                       r"--capacity mem=N$"):
        check_needs([needing(0, gpu=1).info, needing(1, mem=8).info], {"gpu": 2})
    check_needs([needing(0, gpu=2, workers=16).info], {"gpu": 2})  # workers: the pool's


# -- in the planner and the scheduler ----------------------------------------


def task(name, **fields):
    """A fresh task called *name*, with metadata *fields*."""

    def fn():
        return name

    fn.__name__ = fn.__qualname__ = name
    if fields:
        assign_val(fn, **fields)
    return fn


def planner(tasks, capacity):
    return Planner(tasks, {}, check_capacity(capacity))


def pop_all(plan):
    """Names of every task the planner hands out now."""
    names = []
    while (info := plan.pop_ready()) is not None:
        names.append(info)
    return names


def names(infos):
    return [info.task.__name__ for info in infos]


def test_the_planner_hands_out_what_fits_and_parks_the_rest():
    tasks = [task(f"g{i}", needs={"gpu": 1}) for i in range(3)] + [task("cpu")]
    plan = planner(tasks, {"gpu": 2})
    out = pop_all(plan)
    # the third GPU task waits in the planner: the CPU task goes past it
    assert names(out) == ["g0", "g1", "cpu"]
    assert plan.capacity_in_use() == {"gpu": (2, 2)}
    assert plan.waits() == {2: ("gpu",)}
    plan.complete(out[0], {}, None)
    assert names(pop_all(plan)) == ["g2"]


def test_a_task_that_takes_capacity_waits_for_a_free_worker_as_lock_takers_do():
    # spare="auto" asks for no such task beyond the first spare: what it
    # holds must not wait in the pool's queue behind others
    plan = planner([task("gpu", needs={"gpu": 1}), task("cpu")], {"gpu": 1})
    assert plan.pop_ready(may_lock=False) is None  # and the order is kept
    assert names([plan.pop_ready(), plan.pop_ready()]) == ["gpu", "cpu"]


def test_a_failed_task_gives_its_capacity_back():
    tasks = [task("a", needs={"gpu": 2}), task("b", needs={"gpu": 2})]
    plan = planner(tasks, {"gpu": 2})
    (a,) = pop_all(plan)
    plan.complete(a, {}, excinfo(ValueError("boom")))
    assert names(pop_all(plan)) == ["b"]


def test_a_big_task_is_not_starved_by_a_stream_of_small_ones():
    # gpu=2: the big task needs both; small ones keep coming behind it
    small = [task(f"s{i}", needs={"gpu": 1}) for i in range(6)]
    big = task("big", needs={"gpu": 2})
    plan = planner([small[0], big, *small[1:]], {"gpu": 2})
    running = pop_all(plan)
    order = names(running)
    while running:
        plan.complete(running.pop(0), {}, None)
        new = pop_all(plan)
        order.extend(names(new))
        running.extend(new)
    # s0 runs; big is first in line and reserves both GPUs: s1 does not go
    # beside s0 even though one GPU is free
    assert order[:2] == ["s0", "big"]
    assert sorted(order) == sorted(["big", *names_of(small)])


def names_of(tasks):
    return [t.__name__ for t in tasks]


def test_a_task_woken_for_capacity_that_must_wait_for_a_lock_gives_it_back():
    hog = task("hog", claims=["db"])
    gpu = task("gpu", needs={"gpu": 1})
    both = task("both", needs={"gpu": 1}, claims=["db"])
    other = task("other", needs={"gpu": 1})
    plan = planner([hog, gpu, both, other], {"gpu": 1})
    assert names(pop_all(plan)) == ["hog", "gpu"]  # both and other wait for gpu
    plan.complete(plan.infos[1], {}, None)  # gpu ends: both is woken, holding it
    # but db is claimed: both parks on the lock and gives the GPU back to other
    assert names(pop_all(plan)) == ["other"]
    assert plan.waits() == {2: ("db",)}


def test_cancelling_a_parked_task_lets_the_next_one_go():
    tasks = [task("a", needs={"gpu": 1}), task("big", needs={"gpu": 2}),
             task("c", needs={"gpu": 1})]
    plan = planner(tasks, {"gpu": 2})
    assert names(pop_all(plan)) == ["a"]  # big reserves, c waits behind it
    assert plan.cancel(plan.infos[1], "cancelled")
    assert names(pop_all(plan)) == ["c"]


def test_workers_as_a_resource_drain_the_pool_for_a_task_that_needs_many():
    light = [task(f"l{i}") for i in range(6)]
    heavy = task("heavy", needs={"workers": 3})
    plan = Planner([light[0], light[1], heavy, *light[2:]], {})
    plan.slots.workers = 4
    assert names(pop_all(plan)) == ["l0", "l1"]  # heavy waits for 3 free
    # nobody overtakes it: the light tasks behind it wait too
    assert plan.capacity_in_use() == {"workers": (2, 4)}
    plan.complete(plan.infos[0], {}, None)
    assert names(pop_all(plan)) == ["heavy"]  # 1 + 3: the 4 workers
    assert plan.capacity_in_use() == {"workers": (4, 4)}
    plan.complete(plan.infos[1], {}, None)
    # while heavy runs, no task is a spare: one more, on the worker freed
    assert names(pop_all(plan)) == ["l2"]
    plan.complete(plan.infos[2], {}, None)
    assert names(pop_all(plan)) == ["l3", "l4", "l5"]  # spares again


def test_a_task_needing_more_workers_than_the_pool_has_runs_alone():
    heavy = task("heavy", needs={"workers": 16})
    plan = Planner([task("a"), heavy, task("b")], {})
    plan.slots.workers = 2
    assert names(pop_all(plan)) == ["a"]
    plan.complete(plan.infos[0], {}, None)
    assert names(pop_all(plan)) == ["heavy"]
    assert plan.capacity_in_use() == {"workers": (2, 2)}


@pytest.mark.parametrize("make_pool", [
    pytest.param(lambda: ThreadWorkerPool(2, spare=0), id="threads"),
    pytest.param(lambda: ProcessWorkerPool(2, spare=0), id="processes"),
])
def test_a_task_that_starts_processes_of_its_own_takes_that_many_workers(make_pool):
    # two workers; 'heavy' starts two processes of its own: from the loop's
    # events, the workers taken by the tasks handed out never exceed two, so
    # nothing runs beside it (each task takes one worker, heavy two)
    light = [functools.partial(_proc_tasks.echo, value=i) for i in range(4)]
    heavy = functools.partial(_proc_tasks.echo, value="heavy")
    assign_val(heavy, needs={"workers": 2})
    s = Sched([light[0], heavy, *light[1:]])
    out, most, seen = [0], [0], []

    def count(event):
        if event.kind in ("dispatched", "finished"):
            weight = 2 if event.task is heavy else 1
            out[0] += weight if event.kind == "dispatched" else -weight
            most[0] = max(most[0], out[0])
            if event.kind == "dispatched" and event.task is heavy:
                seen.append(s.status().capacity)

    s.observe(count)
    results = [res.ret for res in s.run(make_pool())]
    assert sorted(map(str, results)) == ["0", "1", "2", "3", "heavy"]
    assert most[0] == 2
    assert seen == [{"workers": (2, 2)}]


def test_needs_beyond_capacity_are_refused_before_the_run():
    gpu_task = task("train", needs={"gpu": 4})
    s = Sched([gpu_task], capacity={"gpu": 2})
    message = r"^task 'train' needs 4 of 'gpu', more than its capacity of 2"
    with pytest.raises(MutexError, match=message):
        s.check()
    with pytest.raises(MutexError, match=message):
        s.run()
    with pytest.raises(MutexError, match=r"^task 'train' needs 4 of 'gpu', which "
                       r"has no capacity"):
        Sched([gpu_task]).run()
    assert Sched([gpu_task], capacity={"gpu": 4}).check() is None


def test_sched_checks_its_capacity_at_once():
    with pytest.raises(SchedulerError, match=r"^capacity=\['gpu'\]: expected a "
                       r"mapping"):
        Sched(capacity=["gpu"])


class Meter:
    """Records how much of each resource the tasks hold at once, from inside
    the tasks (the scheduler hands resources out before a task starts and
    takes them back after it ends, so this is at most what it counts)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.now = {}
        self.peak = {}
        self.intervals = []

    def task(self, name, needs, *, wait=None):
        def fn():
            start = time.monotonic()
            with self.lock:
                for res, amount in needs.items():
                    self.now[res] = self.now.get(res, 0) + amount
                    self.peak[res] = max(self.peak.get(res, 0), self.now[res])
            if wait is not None:
                assert wait.wait(timeout=60), f"{name}: gave up waiting"
            with self.lock:
                for res, amount in needs.items():
                    self.now[res] -= amount
                self.intervals.append((start, time.monotonic(), needs))
            return name

        fn.__name__ = fn.__qualname__ = name
        return func_meta(needs=needs)(fn) if needs else fn


def test_waiting_for_capacity_holds_no_worker():
    # two workers, one GPU: a second GPU task waits in the planner, not in a
    # worker, so the CPU task runs while the first GPU task still holds it
    meter = Meter()
    cpu_ran = threading.Event()
    first = meter.task("first", {"gpu": 1}, wait=cpu_ran)
    second = meter.task("second", {"gpu": 1})

    def cpu():
        cpu_ran.set()
        return "cpu"

    s = Sched([first, second, cpu], capacity={"gpu": 1})
    results = [res.ret for res in s.run(ThreadWorkerPool(2, spare=0))]
    assert sorted(results) == ["cpu", "first", "second"]
    assert results.index("second") > results.index("first")
    assert meter.peak == {"gpu": 1}


def test_status_shows_the_capacity_in_use():
    seen = []
    gate = threading.Event()
    meter = Meter()
    hold = meter.task("hold", {"gpu": 2, "mem": 0.5}, wait=gate)
    s = Sched([hold, meter.task("quick", {"mem": 0.25})],
              capacity={"gpu": 3, "mem": 1})

    def watch(event):
        if event.kind == "finished" and event.name == "quick":
            seen.append(s.status().capacity)
            gate.set()

    s.observe(watch)
    list(s.run(ThreadWorkerPool(2, spare=0)))
    assert seen == [{"gpu": (2, 3), "mem": (0.5, 1)}]
    assert s.status().capacity == {}  # the run is over


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_capacity_is_never_exceeded_and_every_task_runs(data):
    # random capacities and needs, on threads: from the recorded intervals,
    # what the running tasks held never adds up to more than the capacity
    resources = ["gpu", "mem", "lic"][: data.draw(st.integers(1, 3))]
    capacity = {res: data.draw(st.integers(1, 4)) for res in resources}
    n = data.draw(st.integers(1, 14))
    meter = Meter()
    tasks = []
    for i in range(n):
        picked = data.draw(st.lists(st.sampled_from(resources), unique=True))
        needs = {res: data.draw(st.integers(1, capacity[res])) for res in picked}
        tasks.append(meter.task(f"t{i}", needs))
    workers = data.draw(st.integers(1, 6))
    s = Sched(tasks, capacity=capacity)
    results = list(s.run(ThreadWorkerPool(workers, spare=data.draw(st.integers(0, 2)))))
    assert sorted(res.ret for res in results) == sorted(f"t{i}" for i in range(n))
    assert all(res.excinfo is None for res in results)
    events = sorted(
        [(start, 1, needs) for start, _end, needs in meter.intervals]
        + [(end, 0, needs) for _start, end, needs in meter.intervals],
        key=lambda e: (e[0], e[1]),  # an end before a start at the same instant
    )
    held = dict.fromkeys(resources, 0)
    for _when, starts, needs in events:
        for res, amount in needs.items():
            held[res] += amount if starts else -amount
            assert held[res] <= capacity[res], (res, held, capacity)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_the_planner_never_hands_out_more_than_the_capacity(data):
    # driven by hand, completions in a random order: at every step what the
    # running tasks need fits, and every task is handed out in the end
    resources = ["a", "b"]
    capacity = {res: data.draw(st.integers(1, 3)) for res in resources}
    n = data.draw(st.integers(1, 16))
    tasks = []
    for i in range(n):
        picked = data.draw(st.lists(st.sampled_from(resources), unique=True))
        needs = {res: data.draw(st.integers(1, capacity[res])) for res in picked}
        fields = {"needs": needs} if needs else {}
        if data.draw(st.booleans()):
            fields["priority"] = data.draw(st.integers(0, 2))
        if data.draw(st.integers(0, 4)) == 0:
            fields["claims"] = ["lock"]
        tasks.append(task(f"t{i}", **fields))
    plan = planner(tasks, capacity)
    running, done = [], 0
    while True:
        running.extend(pop_all(plan))
        held = dict.fromkeys(resources, 0)
        for info in running:
            for res, amount in (info.gate.needs if info.gate else {}).items():
                held[res] += amount
        assert all(held[res] <= capacity[res] for res in resources), held
        if not running:
            break
        finished = running.pop(data.draw(st.integers(0, len(running) - 1)))
        failed = data.draw(st.integers(0, 5)) == 0
        plan.complete(finished, {}, excinfo(TaskFailError("x")) if failed else None)
        done += 1
    assert done == n, plan.waits()
    assert plan.capacity_in_use() == {res: (0, capacity[res]) for res in resources}
