"""Driving a run live under ``Sched.arun`` (SPEC §8, §9): the same loop as
``run()``, its controls called from other tasks on the event loop.

Each test runs on an ``AsyncWorkerPool`` (its tasks on this very loop), a
thread pool and a process pool (waited for from a thread of the run's own).
Tasks are module-level functions (they travel to worker processes) and meet
the test through files; the test's own tasks wait for them by polling to a
deadline (``apoll``), never by sleeping. Observers run in the loop's thread,
so they may set asyncio events.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import warnings

import pytest

from pexen.sched import Sched
from pexen.sched.meta import assign_val
from tests._async import apoll, others, pexen_threads, run
from tests._leaks import poll
from tests._live import blocker, quick
from tests._pools import POOL_KINDS, START_METHODS

KINDS = ["async", "thread", f"process-{START_METHODS[0]}"]

# tags provided for tasks that will be added later are required by none at first
pytestmark = pytest.mark.filterwarnings("ignore::pexen.sched.UnusedTagWarning")


@pytest.fixture(params=KINDS)
def make_pool(request):
    return dict(POOL_KINDS)[request.param]


def make(fn, **fields):
    """A distinct task calling *fn*; *fields*: its kwargs, then metadata."""
    meta = {key: fields.pop(key) for key in ("provides", "requires", "priority")
            if key in fields}
    task = functools.partial(fn)
    assign_val(task, kwargs=fields, **meta)
    return task


def held(tmp_path, **meta):
    """A task that says it started, then waits for the file ``release``."""
    return make(blocker, started=str(tmp_path / "started"),
                release=str(tmp_path / "release"), **meta)


def test_abort_from_another_task_while_the_loop_waits_on_the_pool(make_pool,
                                                                  tmp_path):
    first = held(tmp_path, provides=["unblocked"])
    rest = [make(quick, i=i, requires=["unblocked"]) for i in range(10)]
    s = Sched([first, *rest])
    # the blocker ends once the run, woken, has taken the abort in
    s.observe(lambda e: e.kind == "aborting" and (tmp_path / "release").touch())

    async def abort():
        assert await apoll((tmp_path / "started").exists)
        return s.abort("from a task")

    async def main():
        aborter = asyncio.get_running_loop().create_task(abort())
        results = [res async for res in s.arun(pool=make_pool(2, 2))]
        assert await aborter
        return results

    results = run(main())
    assert [res.task for res in results] == [first]
    assert dict(s.skipped) == {
        task: "not started: the run was aborted: from a task" for task in rest
    }
    assert pexen_threads() == []


def test_paused_with_nothing_in_flight_the_loop_goes_on_until_resumed(make_pool):
    tasks = [make(quick, i=i) for i in range(6)]
    s = Sched(tasks)
    events = []
    paused = asyncio.Event()  # bound to the loop at its first wait

    def observe(event):
        events.append(event.kind)
        if event.kind == "paused":
            paused.set()  # an asyncio event: observers run in the loop's thread

    s.observe(observe)
    seen = []

    async def resume():
        await paused.wait()  # the run is paused, the loop is not
        seen.append(s.status())
        s.resume()

    async def main():
        resumer = asyncio.get_running_loop().create_task(resume())
        results = []
        async for res in s.arun(pool=make_pool(1, 0)):
            results.append(res)
            if len(results) == 1:
                s.pause()
        await resumer
        return results

    results = run(main())
    assert sorted(res.ret for res in results) == list(range(6))
    assert s.skipped == {}
    [status] = seen
    assert status.paused
    assert (status.done, status.running, status.queued, status.ready) == (1, 0, 0, 5)
    # nothing was handed out while paused
    between = events[events.index("paused"):events.index("resumed")]
    assert "dispatched" not in between


def test_observers_run_in_the_loops_thread_and_tell_each_task_in_order(make_pool):
    tasks = [make(quick, i=i) for i in range(5)]
    s = Sched(tasks)
    events, threads = [], set()

    def observe(event):
        events.append(event)
        threads.add(threading.get_ident())

    s.observe(observe)

    async def main():
        return [res async for res in s.arun(pool=make_pool(2, 1))]

    results = run(main())
    assert len(results) == 5
    assert threads == {threading.get_ident()}  # asyncio.run's loop: this thread
    assert events[0].kind == "run-started"
    assert events[-1].kind == "run-ended"
    assert events[-1].status.done == 5
    for task in tasks:
        kinds = [e.kind for e in events if e.task is task]
        assert kinds[0] == "dispatched" and kinds[-1] == "finished"
        assert set(kinds) <= {"dispatched", "started", "finished"}
        times = [e.time for e in events if e.task is task]
        assert times == sorted(times)


def test_tasks_added_mid_run_join_it(make_pool, tmp_path):
    first = held(tmp_path, provides=["first"])
    s = Sched([first])
    by_a_task = make(quick, i=1, requires=["first"], provides=["second"])
    from_the_body = make(quick, i=2, requires=["second"])

    async def add():  # while the loop waits on the pool for first
        assert await apoll((tmp_path / "started").exists)
        s.add_tasks([by_a_task])
        (tmp_path / "release").touch()

    async def main():
        adder = asyncio.get_running_loop().create_task(add())
        results = []
        async for res in s.arun(pool=make_pool(2, 1)):
            results.append(res)
            if res.task is by_a_task:
                s.add_tasks([from_the_body])
        await adder
        return results

    results = run(main())
    assert [res.task for res in results] == [first, by_a_task, from_the_body]
    assert [res.ret for res in results[1:]] == [1, 2]
    assert s.skipped == {}


def test_a_task_cancelled_from_the_loop_body_is_skipped(make_pool):
    last = make(quick, i=-1, priority=1)
    tasks = [make(quick, i=i) for i in range(3)] + [last]
    s = Sched(tasks)

    async def main():
        results = []
        async for res in s.arun(pool=make_pool(1, 0)):
            results.append(res)
            if len(results) == 1:
                s.cancel(last)
        return results

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a cancel is asked for: no warning
        results = run(main())
    assert last not in [res.task for res in results]
    assert dict(s.skipped) == {last: "cancelled before it was dispatched"}


def test_status_from_another_task_sees_the_run(make_pool, tmp_path):
    first, second = held(tmp_path), make(quick, i=0, priority=1)
    s = Sched([first, second])
    seen = []

    async def look():
        assert await apoll((tmp_path / "started").exists)
        seen.append(s.status())
        (tmp_path / "release").touch()

    async def main():
        looker = asyncio.get_running_loop().create_task(look())
        results = [res async for res in s.arun(pool=make_pool(1, 0))]
        await looker
        assert others() == set()
        return results

    results = run(main())
    assert [res.task for res in results] == [first, second]
    [status] = seen
    assert (status.total, status.done, status.ready) == (2, 0, 1)
    assert (status.running, status.queued) == (1, 0)
    assert [task for task, _since in status.running_tasks] == [first]


def test_abort_with_force_from_another_task_stops_the_running_task(make_pool,
                                                                   tmp_path):
    # a process pool kills the worker; a thread cannot be stopped: it is
    # abandoned, and ends once released, after the run
    first = held(tmp_path)
    s = Sched([first])

    async def abort():
        assert await apoll((tmp_path / "started").exists)
        s.abort("forced", force=True)

    async def main():
        aborter = asyncio.get_running_loop().create_task(abort())
        results = [res async for res in s.arun(pool=make_pool(1, 0))]
        await aborter
        return results

    try:
        results = run(main())
    finally:
        (tmp_path / "release").touch()
    assert results == []
    assert s.skipped[first].startswith("the run was aborted: forced; task ")
    assert "was cancelled while it ran" in s.skipped[first]
    assert poll(lambda: pexen_threads() == [])


def test_cancelled_while_paused_with_nothing_in_flight_stops_the_run(make_pool):
    tasks = [make(quick, i=i) for i in range(4)]
    s = Sched(tasks)
    paused = asyncio.Event()
    s.observe(lambda e: e.kind == "paused" and paused.set())
    got = []

    async def consume():
        async for res in s.arun(pool=make_pool(1, 0)):
            got.append(res)
            s.pause()

    async def main():
        consumer = asyncio.get_running_loop().create_task(consume())
        await paused.wait()  # the consumer waits for a command now
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert pexen_threads() == []

    run(main())
    assert len(got) == 1
    assert dict(s.skipped) == {
        task: "not started: the run was stopped early"
        for task in tasks if task is not got[0].task
    }
    assert s.status().skipped == 3
