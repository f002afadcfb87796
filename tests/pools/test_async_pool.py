"""AsyncWorkerPool: coroutines on an event loop, ``workers`` at a time (SPEC §9).

Each behaviour is checked where the pool runs its loop: its own loop in a
thread of its own (``Sched.run()``, the ``run`` mode) and the caller's loop
(``pexen.amap`` here, ``Sched.arun`` in test_arun.py). The shared scheduler
suite (tests/_pools.py) runs on this pool too. Tasks synchronise through
events and counters, never by sleeping; a task that must run past its
timeout waits for an event that comes only after the test has its result.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import re
import sys
import threading
import time

import pytest

import pexen
from pexen.sched import (
    PoolError,
    PoolWarning,
    Sched,
    TaskCancelledError,
    TaskTimeoutError,
)
from pexen.sched._naming import task_name
from pexen.sched._pools.base import Job
from pexen.sched.meta import assign_val
from pexen.sched.pool import AsyncWorkerPool
from tests._async import others, pexen_threads, run
from tests._leaks import poll

DEADLINE = 30.0  # seconds: only to turn a hang into a failure


def results_of(tasks, pool):
    """Run *tasks* on *pool* under ``Sched.run()``; the TaskRes by task."""
    return {res.task: res for res in Sched(tasks).run(pool=pool)}


def job(key, fn):
    return Job(key, fn, False, {}, {}, None)


async def outcomes_on_the_loop(pool, fns):
    """Run each of *fns* as a job on *pool*, on this loop; their outcomes in order."""
    await pool.start_async()
    try:
        got = {}
        new = [job(key, fn) for key, fn in enumerate(fns)]
        while len(got) < len(fns):
            for outcome in await pool.wait_async(new):
                got[outcome.key] = outcome
            new = []
        return [got[key] for key in range(len(fns))]
    finally:
        await pool.stop_async()


def rets(mode, fns, pool):
    """What each of *fns* returned, run on *pool* in *mode* ("run" or "loop")."""
    if mode == "run":
        results = results_of(fns, pool)
        outcomes = [results[fn] for fn in fns]
    else:
        outcomes = run(outcomes_on_the_loop(pool, fns))
    assert all(outcome.excinfo is None for outcome in outcomes), outcomes
    return [outcome.ret for outcome in outcomes]


class Crowd:
    """Counts coroutines inside at once; each waits until *size* are in.

    With fewer than *size* running at once, the first ones would wait in
    vain: ``enter`` gives up after DEADLINE and the test fails.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.inside = 0
        self.most = 0
        self.full: asyncio.Event | None = None

    async def enter(self, n: int) -> int:
        if self.full is None:  # made on the loop the tasks run on
            self.full = asyncio.Event()
        self.inside += 1
        self.most = max(self.most, self.inside)
        if self.inside == self.size:
            self.full.set()
        try:
            await asyncio.wait_for(self.full.wait(), DEADLINE)
            await asyncio.sleep(0)  # the others get a turn while we are inside
        finally:
            self.inside -= 1
        return n


# -- N at a time ------------------------------------------------------------------


def test_under_run_coroutines_run_workers_at_a_time_on_one_loop():
    crowd = Crowd(size=5)
    tasks = [functools.partial(crowd.enter, n) for n in range(23)]
    results = results_of(tasks, AsyncWorkerPool(workers=5))
    assert sorted(res.ret for res in results.values()) == list(range(23))
    assert crowd.most == 5  # all five at once, never more
    assert pexen_threads() == []  # the private loop's thread ended with the run


def test_on_the_callers_loop_coroutines_run_workers_at_a_time_in_no_thread():
    crowd = Crowd(size=4)

    async def main():
        loop = asyncio.get_running_loop()
        n_threads = threading.active_count()
        got = [n async for n in pexen.amap(crowd.enter, range(17),
                                           pool=AsyncWorkerPool(workers=4),
                                           chunksize=1)]
        assert threading.active_count() == n_threads
        return got, loop

    got, _loop = run(main())
    assert got == list(range(17))
    assert crowd.most == 4


@pytest.mark.parametrize("mode", ["run", "loop"])
def test_no_thread_of_a_plain_function_outlives_the_run(mode):
    # each thread calls back as its last act, then ends: the run joins it
    rets(mode, [functools.partial(int, n) for n in range(300)], AsyncWorkerPool(50))
    assert pexen_threads() == []


def test_jobs_start_in_the_order_they_were_submitted():
    started = []

    async def note(n):
        started.append(n)

    tasks = [functools.partial(note, n) for n in range(10)]
    results_of(tasks, AsyncWorkerPool(workers=1, spare=9))
    assert started == list(range(10))


# -- plain functions never block the loop -------------------------------------------


@pytest.mark.parametrize("mode", ["run", "loop"])
def test_a_plain_function_runs_in_a_thread_and_the_loop_goes_on(mode):
    # The plain function blocks until a coroutine on the pool's loop sets the
    # event: had it blocked the loop, the coroutine could never run.
    released = threading.Event()
    names = []

    def blocks_until_released():
        names.append(threading.current_thread().name)
        return released.wait(DEADLINE)

    async def releases():
        released.set()
        return True

    got = rets(mode, [blocks_until_released, releases], AsyncWorkerPool(2))
    assert got == [True, True]
    assert names[0].startswith("pexen-async-")


@pytest.mark.parametrize("mode", ["run", "loop"])
def test_a_plain_function_returning_a_coroutine_has_it_awaited_on_the_loop(mode):
    async def on_which_loop():
        return asyncio.get_running_loop()

    def plain():
        return on_which_loop()

    [loop, plain_loop] = rets(mode, [on_which_loop, plain], AsyncWorkerPool())
    assert plain_loop is loop


def test_a_plain_function_sees_the_callers_context():
    var = contextvars.ContextVar("var", default="unset")

    async def main():
        var.set("set by the caller")
        return [outcome.ret for outcome in await outcomes_on_the_loop(
            AsyncWorkerPool(), [var.get]
        )]

    assert run(main()) == ["set by the caller"]


# -- timeouts ------------------------------------------------------------------------


def timed(fn, timeout):
    task = functools.partial(fn)
    assign_val(task, timeout=timeout)
    return task


def test_a_timeout_cancels_the_coroutine():
    cancelled = []

    async def forever():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    task = timed(forever, 0.1)
    [res] = results_of([task], AsyncWorkerPool()).values()
    assert res.excinfo.type is TaskTimeoutError
    assert str(res.excinfo.val) == (
        "task 'partial(test_a_timeout_cancels_the_coroutine.<locals>.forever)' ran "
        "longer than its timeout of 0.1 s; it was cancelled"
    )
    assert cancelled == [True]


def test_a_coroutine_that_swallows_its_cancellation_is_timed_out_all_the_same():
    async def stubborn():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return "too late"

    [res] = results_of([timed(stubborn, 0.1)], AsyncWorkerPool()).values()
    assert res.excinfo.type is TaskTimeoutError
    assert "and ignored its cancellation (it returned after" in str(res.excinfo.val)
    assert "what it returned is discarded" in str(res.excinfo.val)


def test_a_plain_function_past_its_timeout_is_reported_then_abandoned():
    released = threading.Event()

    def stuck():
        released.wait(DEADLINE)
        return "late"

    task = timed(stuck, 0.1)
    try:
        with pytest.warns(PoolWarning, match=r"abandons 1 thread still running a "
                          r"plain \(not async\) function that overran its timeout: "
                          r"task 'partial\(.*stuck\)' \(timeout 0.1 s\) in thread "
                          r"'pexen-async-\d+\.1'"):
            [res] = results_of([task], AsyncWorkerPool()).values()
        assert res.excinfo.type is TaskTimeoutError
        assert "a thread cannot be stopped" in str(res.excinfo.val)
        assert [name for name in pexen_threads()] != []  # still running, abandoned
    finally:
        released.set()
    assert poll(lambda: pexen_threads() == [])


@pytest.mark.parametrize("mode", ["run", "loop"])
def test_leaving_early_waits_for_a_plain_function_until_its_deadline(mode):
    # A thread cannot be cancelled: the end of the run waits for it while
    # its timeout runs, then abandons it.
    released = threading.Event()

    async def quick():
        return "quick"

    tasks = [quick, timed(lambda: released.wait(DEADLINE), 0.3)]
    warned = pytest.warns(PoolWarning, match="abandons 1 thread still running")
    try:
        if mode == "run":
            with warned:
                for res in Sched(tasks).run(pool=AsyncWorkerPool(2)):
                    assert res.ret == "quick"
                    break
        else:
            async def main():
                with warned:
                    results = Sched(tasks).arun(pool=AsyncWorkerPool(2))
                    async with contextlib.aclosing(results):
                        async for res in results:
                            assert res.ret == "quick"
                            break
                assert others() == set()  # nothing left waiting on the loop

            run(main())
    finally:
        released.set()
    assert poll(lambda: pexen_threads() == [])


# -- leaving early ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["run", "loop"])
def test_leaving_early_cancels_the_running_coroutines(mode):
    cancelled = []
    n_started = []

    async def quick():
        return "quick"

    async def forever(n):
        n_started.append(n)
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.append(n)

    tasks = [quick] + [functools.partial(forever, n) for n in range(5)]
    pool = AsyncWorkerPool(workers=3, spare=2)
    if mode == "run":
        for res in Sched(tasks).run(pool=pool):
            assert res.ret == "quick"
            break
    else:
        async def call(fn):
            return await fn()

        async def main():
            results = pexen.amap(call, tasks, pool=pool, chunksize=1)
            async with contextlib.aclosing(results):
                async for result in results:
                    assert result == "quick"
                    break
            assert others() == set()

        run(main())
    # whatever had started was cancelled, and its cancellation awaited
    assert n_started and sorted(cancelled) == sorted(n_started)
    assert pexen_threads() == []


def test_what_a_task_left_on_the_private_loop_is_cancelled_with_it():
    leftover = []

    async def leaves_a_task():
        async def background():
            await asyncio.Event().wait()

        leftover.append(asyncio.get_running_loop().create_task(background()))
        await asyncio.sleep(0)

    results_of([leaves_a_task], AsyncWorkerPool())
    assert leftover[0].cancelled()
    assert pexen_threads() == []


def waiting_under(thread: threading.Thread, name: str) -> bool:
    """Whether *thread* is blocked in a ``wait`` called (at some depth) by *name*."""
    frame = sys._current_frames().get(thread.ident)
    if frame is None or frame.f_code.co_name != "wait":
        return False
    while frame is not None and frame.f_code.co_name != name:
        frame = frame.f_back
    return frame is not None


def test_once_stop_is_called_no_queued_job_starts():
    # The loop is blocked by the running job when stop() is called; when the
    # job ends, the one queued behind it must not start, although the loop
    # has not yet got to the shutdown stop() asked for.
    in_the_loop, release = threading.Event(), threading.Event()
    started = []

    async def blocks_the_loop():
        in_the_loop.set()
        release.wait(DEADLINE)  # on purpose: no await, the loop is held

    async def queued():
        started.append("queued")

    pool = AsyncWorkerPool(workers=1, spare=1)
    pool.start()
    pool.submit(job(0, blocks_the_loop))
    pool.submit(job(1, queued))
    waiter = threading.Thread(target=pool.wait)  # hands the jobs to the loop
    waiter.start()
    stopper = threading.Thread(target=pool.stop, args=(True,))
    try:
        assert in_the_loop.wait(DEADLINE)
        stopper.start()
        assert poll(lambda: waiting_under(stopper, "_await_shutdown"))
    finally:
        release.set()
        if stopper.ident is not None:
            stopper.join()
        else:  # it never started: stop here
            pool.stop(True)
        waiter.join()
    assert started == []


# -- driving a run live ---------------------------------------------------------------


def drive(mode, s, pool):
    """Every TaskRes of a run of *s* on *pool*, by ``run()`` or ``arun()``."""
    if mode == "run":
        return list(s.run(pool=pool))

    async def main():
        return [res async for res in s.arun(pool=pool)]

    return run(main())


def in_thread(fn):
    thread = threading.Thread(target=fn, name="test-control")
    thread.start()
    return thread


@pytest.mark.parametrize("mode", ["run", "arun"])
def test_cancelling_a_running_coroutine_cancels_it(mode):
    cancelled = []

    async def forever():
        try:
            await asyncio.wait_for(asyncio.Event().wait(), DEADLINE)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def quick():
        return "quick"

    s = Sched([forever, quick])
    results = []

    def body(res):
        results.append(res)
        if res.task is quick:  # forever started first, and runs
            s.cancel(forever)

    s.observe(lambda e: e.kind == "finished" and body(e.res))
    drive(mode, s, AsyncWorkerPool(workers=2, spare=0))
    assert [res.task for res in results] == [quick, forever]
    excinfo = results[1].excinfo
    assert excinfo.type is TaskCancelledError
    assert str(excinfo.val) == (
        "task 'test_cancelling_a_running_coroutine_cancels_it.<locals>.forever' "
        "was cancelled while it ran"
    )
    assert cancelled == [True]


@pytest.mark.parametrize("mode", ["run", "arun"])
def test_abort_drops_the_jobs_queued_in_the_pool(mode):
    started, release = threading.Event(), threading.Event()

    def held():
        started.set()
        return release.wait(DEADLINE)

    async def quick():
        return "quick"

    queued = [functools.partial(quick) for _ in range(3)]
    assign_val(held, priority=-1)
    s = Sched([held, *queued])
    s.observe(lambda e: e.kind == "aborting" and release.set())

    def abort():
        assert started.wait(DEADLINE)
        s.abort("enough")

    aborter = in_thread(abort)
    try:  # one worker: held runs, the rest wait in the pool (spare)
        results = drive(mode, s, AsyncWorkerPool(workers=1, spare=3))
    finally:
        release.set()
        aborter.join()
    assert [(res.task, res.ret) for res in results] == [(held, True)]
    assert dict(s.skipped) == {
        task: "dropped from the pool's queue: the run was aborted: enough"
        for task in queued
    }


@pytest.mark.parametrize("mode", ["run", "arun"])
def test_abort_with_force_cancels_the_running_coroutines(mode):
    started, cancelled = [], []
    everyone_in = threading.Event()

    async def forever(n):
        started.append(n)
        if len(started) == 2:
            everyone_in.set()
        try:
            await asyncio.wait_for(asyncio.Event().wait(), DEADLINE)
        except asyncio.CancelledError:
            cancelled.append(n)
            raise

    tasks = [functools.partial(forever, n) for n in range(2)]
    s = Sched(tasks)

    def abort():
        assert everyone_in.wait(DEADLINE)
        s.abort("forced", force=True)

    aborter = in_thread(abort)
    try:
        results = drive(mode, s, AsyncWorkerPool(workers=2, spare=0))
    finally:
        aborter.join()
    assert results == []
    assert sorted(cancelled) == [0, 1]
    assert set(s.skipped) == set(tasks)
    for task in tasks:
        assert s.skipped[task] == (
            f"the run was aborted: forced; task {task_name(task)!r} was cancelled "
            f"while it ran"
        )


def test_a_job_cancelled_before_its_asyncio_task_began_is_dropped():
    # Under arun the consumer learns that A is done before the asyncio task
    # of B, made as A ended, has taken its first step: cancelled then, it
    # never runs (cancelled later, it would be stopped while it runs).
    began = []

    async def a():
        return "a"

    async def b():
        began.append(True)
        await asyncio.wait_for(asyncio.Event().wait(), DEADLINE)

    s = Sched([a, b])

    async def main():
        got = []
        async for res in s.arun(pool=AsyncWorkerPool(workers=1, spare=1)):
            got.append(res)
            if res.task is a:
                s.cancel(b)
        return got

    results = run(main())
    assert results[0].task is a
    if began:  # it had begun: stopped while it ran
        assert [res.excinfo.type for res in results[1:]] == [TaskCancelledError]
    else:
        assert results[1:] == []
        assert s.skipped == {
            b: "cancelled while queued in the pool: dropped before it started"
        }


@pytest.mark.parametrize("mode", ["run", "arun"])
def test_a_plain_function_cancelled_while_it_runs_is_abandoned(mode):
    started, release = threading.Event(), threading.Event()

    def stuck():
        started.set()
        release.wait(DEADLINE)
        return "late"

    s = Sched([stuck])
    canceller = in_thread(lambda: started.wait(DEADLINE) and s.cancel(stuck))
    try:
        [res] = drive(mode, s, AsyncWorkerPool())
        assert res.excinfo.type is TaskCancelledError
        assert re.fullmatch(
            r"task '.*stuck' was cancelled while it ran; its thread "
            r"'pexen-async-\d+\.1' cannot be stopped, so it was abandoned: it runs "
            r"on until the task returns, and what it returns is discarded",
            str(res.excinfo.val),
        )
        assert pexen_threads() != []  # still running, abandoned
    finally:
        release.set()
        canceller.join()
    assert poll(lambda: pexen_threads() == [])


def test_running_names_the_jobs_started_and_not_the_queued():
    async def forever():
        await asyncio.Event().wait()  # till stop(cancel=True)

    pool = AsyncWorkerPool(workers=2, spare=1)
    before = time.monotonic()
    pool.start()
    for key in range(3):
        pool.submit(job(key, forever))
    waiter = threading.Thread(target=pool.wait)  # hands the jobs to the loop
    waiter.start()
    try:
        assert poll(lambda: len(pool.running()) == 2)
        running = pool.running()
        assert sorted(running) == [0, 1]  # 2 waits for a worker
        assert all(before <= when <= time.monotonic()
                   for when, _worker in running.values())
        assert len({worker for _when, worker in running.values()}) == 2
    finally:
        pool.wake()
        waiter.join()
        pool.stop(cancel=True)
    assert pool.running() == {}


@pytest.mark.parametrize("mode", ["run", "arun"])
def test_each_job_runs_in_a_worker_slot_of_its_own_while_it_runs(mode):
    """A job is told to run on one of ``workers`` slots (as a thread pool's
    on one of its threads): at most that many names, and the jobs of one
    slot one after the other, so a trace or a report shows one track each."""
    crowd = Crowd(size=3)
    tasks = [functools.partial(crowd.enter, n) for n in range(12)]
    s = Sched(tasks)
    finished = []
    s.observe(lambda e: e.kind == "finished" and finished.append(e))
    results = drive(mode, s, AsyncWorkerPool(workers=3))
    assert sorted(res.ret for res in results) == list(range(12))
    names = {e.worker for e in finished}
    assert len(names) == 3, names
    assert all(re.fullmatch(r"pexen-async-\d+/[123]", name) for name in names)
    for name in names:
        spans = sorted((e.time - e.duration, e.time)
                       for e in finished if e.worker == name)
        assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))


@pytest.mark.parametrize("mode", ["run", "arun"])
def test_resizing_up_starts_the_jobs_queued_in_the_pool(mode):
    crowd = Crowd(size=3)  # needs all three inside at once
    tasks = [functools.partial(crowd.enter, n) for n in range(3)]
    s = Sched(tasks)
    pool = AsyncWorkerPool(workers=1, spare=2)  # all three handed out at once

    def resize():
        assert poll(lambda: pool.running())  # the first one runs
        s.resize(3)

    resizer = in_thread(resize)
    try:
        results = drive(mode, s, pool)
    finally:
        resizer.join()
    assert sorted(res.ret for res in results) == [0, 1, 2]
    assert crowd.most == 3


# -- the pool interface -------------------------------------------------------------


def test_wake_ends_a_blocking_wait_with_no_outcome():
    gate = threading.Event()

    def blocked():
        return gate.wait(DEADLINE)

    pool = AsyncWorkerPool()
    pool.start()
    try:
        pool.submit(job(0, blocked))
        waker = threading.Thread(target=pool.wake)
        waker.start()
        assert pool.wait() == []  # woken, nothing done yet
        waker.join()
        gate.set()
        [outcome] = pool.wait()
        assert (outcome.key, outcome.ret) == (0, True)
    finally:
        gate.set()
        pool.stop()


def test_wake_ends_an_async_wait_with_no_outcome():
    async def main():
        gate = asyncio.Event()

        async def blocked():
            await gate.wait()
            return "done"

        pool = AsyncWorkerPool()
        await pool.start_async()
        try:
            threading.Thread(target=pool.wake).start()
            assert await pool.wait_async([job(0, blocked)]) == []
            gate.set()
            [outcome] = await pool.wait_async()
            assert (outcome.key, outcome.ret) == (0, "done")
        finally:
            await pool.stop_async()

    run(main())


def test_started_one_way_it_refuses_to_be_driven_the_other():
    async def main():
        pool = AsyncWorkerPool()
        await pool.start_async()
        try:
            with pytest.raises(PoolError, match=r"was not started by start\(\)"):
                pool.wait()
            with pytest.raises(PoolError, match="is already serving a run"):
                pool.start()
            with pytest.raises(PoolError, match=r"serves a run started by "
                               r"start_async\(\), on an event loop: stop it there, "
                               r"with await pool.stop_async\(\)"):
                pool.stop()
        finally:
            await pool.stop_async()

    run(main())
    pool = AsyncWorkerPool()
    pool.start()
    try:
        with pytest.raises(PoolError, match=r"was not started by start_async\(\)"):
            run(pool.wait_async())
    finally:
        pool.stop()


def test_repr_and_counts():
    pool = AsyncWorkerPool(workers=10_000)
    assert repr(pool) == "AsyncWorkerPool(workers=10000, spare='auto')"
    assert pool.capacity == 10_001
    with pytest.raises(PoolError, match="workers=0"):
        AsyncWorkerPool(workers=0)
