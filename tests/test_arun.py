"""``Sched.arun`` (SPEC §9): ``run()`` as an async generator, on every pool.

The same results as ``run()`` (dependencies, locks, failures, skips), the
same back-pressure, an event loop that keeps beating while worker processes
compute (tasks in the workers wait for its beats), and cancellation at every
stage (before the start, mid-run, while the consumer holds a result, by
``asyncio.timeout``) stopping the run as ``break`` does: the unfinished
tasks in ``Sched.skipped``, and no thread, process or pending asyncio task
left behind.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import threading

import pytest

from pexen.sched import Sched, SchedulerError, UnrunTasksWarning
from pexen.sched.meta import assign_val
from pexen.sched.pool import AsyncWorkerPool, ProcessWorkerPool, ThreadWorkerPool
from tests import _proc_tasks as tasks
from tests._async import (
    Heartbeat,
    Ticker,
    apoll,
    cancelled_while_holding,
    others,
    pexen_threads,
    run,
    spin,
    timed_out_after_the_first,
)


def graph():
    """A small graph: a provider, a dependent, a lock pair, a failure."""
    def make(name, ret=None, exc=None, **meta):
        fn = functools.partial(_body, ret, exc)
        assign_val(fn, **meta)
        fn.name = name
        return fn

    return [
        make("base", ret="b", provides=["base"]),
        make("needs-base", ret="n", requires=["base"]),
        make("claims-db", ret="c", claims=["db"]),
        make("uses-db", ret="u", uses=["db"]),
        make("fails", exc=ValueError("boom"), provides=["never"]),
        make("needs-never", ret="x", requires=["never"]),
    ]


def _body(ret, exc, shared):
    if exc is not None:
        raise exc
    return ret


async def collect(agen):
    return [res async for res in agen]


def summary(results, sched):
    done = sorted((res.task.name, res.ret, type(res.excinfo.val).__name__
                   if res.excinfo else None) for res in results)
    skipped = sorted((task.name, reason) for task, reason in sched.skipped.items())
    return done, skipped


def test_the_same_results_as_run_on_every_pool(make_pool):
    tasks_ = graph()
    s = Sched(tasks_)
    with pytest.warns(UnrunTasksWarning):
        expected = summary(list(s.run(pool=make_pool(2, 1))), s)
    with pytest.warns(UnrunTasksWarning):
        got = summary(run(collect(s.arun(pool=make_pool(2, 1)))), s)
    assert got == expected
    assert pexen_threads() == []


async def async_double(shared, *, n):
    await asyncio.sleep(0)
    shared["n"] = n
    return 2 * n


def test_async_def_tasks_run_on_every_pool(make_pool):
    task_list = [functools.partial(async_double, n=n) for n in range(5)]
    got = run(collect(Sched(task_list).arun(pool=make_pool(2, 1))))
    assert sorted((res.ret, res.shared["n"]) for res in got) == [
        (2 * n, n) for n in range(5)
    ]


def test_the_default_pool_and_a_refused_one():
    s = Sched([lambda: 1])
    assert [res.ret for res in run(collect(s.arun()))] == [1]
    with pytest.raises(SchedulerError, match="expected a WorkerPool instance"):
        s.arun(pool="threads")


def test_one_run_at_a_time():
    async def main():
        s = Sched([lambda: 1])
        agen = s.arun()
        await agen.__anext__()
        with pytest.raises(SchedulerError, match="already running"):
            s.arun()
        with pytest.raises(SchedulerError, match="already running"):
            s.run()
        await agen.aclose()
        assert [res.ret async for res in s.arun()] == [1]  # once it is over

    run(main())


def test_no_task_is_dispatched_while_the_consumer_holds_a_result():
    started = []

    def make(n):
        def fn():
            started.append(n)
            return n
        return fn

    pool = ThreadWorkerPool(workers=2, spare=1)

    async def main():
        got = []
        async for res in Sched([make(n) for n in range(20)]).arun(pool=pool):
            got.append(res.ret)
            for _ in range(20):  # the loop turns while we hold the result
                await asyncio.sleep(0)
            # only what was out when this result came: at most the capacity
            assert len(started) <= len(got) + pool.capacity
        return got

    assert sorted(run(main())) == list(range(20))


def test_coroutines_run_on_the_callers_loop_with_no_thread():
    async def which_loop():
        await asyncio.sleep(0)
        return asyncio.get_running_loop()

    async def main():
        n_threads = threading.active_count()
        tasks_ = [functools.partial(which_loop) for _ in range(50)]
        loops = {res.ret async for res in Sched(tasks_).arun(AsyncWorkerPool(10))}
        assert threading.active_count() == n_threads
        return loops, asyncio.get_running_loop()

    loops, loop = run(main())
    assert loops == {loop}


def test_the_loop_beats_on_while_worker_processes_compute(tmp_path):
    counter = str(tmp_path / "beats")
    tasks_ = [functools.partial(tasks.busy_until_beats, n, counter=counter)
              for n in range(6)]

    async def main():
        async with Heartbeat(counter) as heart:
            got = [res async for res in Sched(tasks_).arun(ProcessWorkerPool(2))]
        return got, heart.beats

    got, beats = run(main())
    assert sorted(res.ret for res in got) == list(range(6)), [r.excinfo for r in got]
    assert beats >= 20 * 3  # 6 tasks on 2 workers: at least 3 rounds of 20 beats


def test_the_loop_gets_turns_while_a_long_batch_of_results_is_handed_out():
    # 200 coroutines end in one step of the loop, so their results come in
    # one batch; the consumer spends 0.5 ms on each and awaits nothing:
    # arun itself must let the loop run.
    async def quick():
        return 1

    async def main():
        got, ticks = [], []
        tasks_ = [functools.partial(quick) for _ in range(200)]
        async with Ticker() as ticker:
            async for res in Sched(tasks_).arun(AsyncWorkerPool(200, spare=0)):
                ticks.append(ticker.ticks)
                got.append(res.ret)
                spin(0.0005)
        return got, ticks[-1] - ticks[0]  # between the first and last results

    got, ticks_during = run(main())
    assert got == [1] * 200
    assert ticks_during > 0


# -- cancellation at every stage -----------------------------------------------------


def held_run(tmp_path):
    """A Sched of 0..5 whose task 1 says it started, then waits for release."""
    def make(n):
        fn = functools.partial(tasks.held_at, n, at=1,
                               started=str(tmp_path / "started"),
                               release=str(tmp_path / "release"))
        fn.n = n
        return fn

    return Sched([make(n) for n in range(6)])


def stopped_like_break(s, got):
    """The run stopped as a ``break`` stops one: the rest skipped, with reasons."""
    ran = {res.task.n for res in got}
    assert {task.n for task in s.skipped} == set(range(6)) - ran
    assert all(reason for reason in s.skipped.values())


def test_closed_before_it_starts_nothing_starts(make_pool, tmp_path):
    s = held_run(tmp_path)

    async def main():
        await s.arun(pool=make_pool(1, 0)).aclose()
        consumer = asyncio.get_running_loop().create_task(
            collect(s.arun(pool=make_pool(1, 0)))
        )
        consumer.cancel()  # before its first step
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert pexen_threads() == []

    run(main())
    assert not (tmp_path / "started").exists()
    (tmp_path / "release").touch()
    assert len(list(s.run(pool=make_pool(1, 0)))) == 6  # not left "running"


def test_cancelled_mid_run_stops_the_run(make_pool, tmp_path):
    s = held_run(tmp_path)
    got = []

    async def consume():
        async for res in s.arun(pool=make_pool(1, 0)):
            got.append(res)

    async def main():
        consumer = asyncio.get_running_loop().create_task(consume())
        assert await apoll(lambda: (tmp_path / "started").exists())
        consumer.cancel()  # while it waits for task 1
        (tmp_path / "release").touch()  # a thread pool waits for its running task
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert pexen_threads() == [] and others() == set()

    run(main())
    assert [res.task.n for res in got] == [0]
    stopped_like_break(s, got)


@pytest.mark.parametrize("aclosing", [True, False], ids=["aclosing", "collected"])
def test_cancelled_while_holding_a_result_stops_the_run(make_pool, tmp_path,
                                                        aclosing):
    s = held_run(tmp_path)
    (tmp_path / "release").touch()  # nothing waits: the consumer holds a result
    got = cancelled_while_holding(lambda: s.arun(pool=make_pool(1, 1)), aclosing)
    assert [res.task.n for res in got] == [0]
    stopped_like_break(s, got)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout: 3.11+")
def test_asyncio_timeout_around_it_works(make_pool, tmp_path):
    # a thread pool waits for its running task: released once the timeout is up
    s = held_run(tmp_path)
    got = timed_out_after_the_first(s.arun(pool=make_pool(1, 0)), tmp_path / "release")
    assert [res.task.n for res in got] == [0]
    stopped_like_break(s, got)
