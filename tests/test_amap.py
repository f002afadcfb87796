"""``pexen.amap`` and ``pexen.astarmap`` (SPEC §9): ``pexen.map`` in async code.

Same semantics as ``pexen.map`` (order, laziness, failures in their turn,
``return_exceptions``) on every pool, plus what async code needs: the event
loop is never blocked on the pool (a heartbeat that tasks in worker processes
wait for), and cancelling the consumer, at any stage, stops the pool and
leaves no thread, process or pending asyncio task.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import sys
import threading
import traceback

import pytest

import pexen
from pexen.sched import TaskTimeoutError, WorkerCrashError
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
from tests.test_map import crash_on_three, fail_on_three, square


async def collect(agen):
    return [item async for item in agen]


async def async_square(x):
    await asyncio.sleep(0)
    return x * x


async def async_fail_on_three(x):
    await asyncio.sleep(0)
    if x == 3:
        raise ValueError(f"three is bad: {x}")
    return x


# -- pexen.map's semantics ------------------------------------------------------


def test_results_come_in_input_order_on_every_pool(make_pool):
    got = run(collect(pexen.amap(square, range(200), pool=make_pool(2, 1))))
    assert got == [x * x for x in range(200)]
    assert pexen_threads() == []


def test_coroutine_functions_run_on_every_pool(make_pool):
    got = run(collect(pexen.amap(async_square, range(50), pool=make_pool(2, 1))))
    assert got == [x * x for x in range(50)]


def test_unordered_and_starmap():
    got = run(collect(pexen.amap(square, range(100), pool=ThreadWorkerPool(2),
                                 ordered=False)))
    assert sorted(got) == [x * x for x in range(100)]
    got = run(collect(pexen.astarmap(pow, [(2, 3), (3, 2)], pool=ThreadWorkerPool(2))))
    assert got == [8, 9]


def test_the_default_pool_of_a_coroutine_function_runs_it_on_the_callers_loop():
    async def whose_loop(x):
        return asyncio.get_running_loop()

    async def main():
        loop = asyncio.get_running_loop()
        n_threads = threading.active_count()
        loops = [item async for item in pexen.amap(whose_loop, range(5))]
        assert threading.active_count() == n_threads  # not a thread more
        return loop, loops

    loop, loops = run(main())
    assert all(each is loop for each in loops)


def test_map_runs_coroutine_functions_on_a_private_loop():
    assert list(pexen.map(async_square, range(20))) == [x * x for x in range(20)]
    assert pexen_threads() == []


def test_inputs_are_read_lazily_and_an_endless_input_works():
    read = []

    def endless():
        for n in itertools.count():
            read.append(n)
            yield n

    pool = ThreadWorkerPool(workers=2, spare=1)

    async def main():
        async with contextlib.aclosing(
            pexen.amap(square, endless(), pool=pool, chunksize=4)
        ) as results:
            got = []
            async for result in results:
                got.append(result)
                if len(got) == 10:
                    break
        assert pexen_threads() == []  # aclosing stopped the pool
        return got

    assert run(main()) == [x * x for x in range(10)]
    assert len(read) <= 10 + pool.capacity * 4 + 4


@pytest.mark.parametrize("fn", [fail_on_three, async_fail_on_three],
                         ids=["plain", "async"])
def test_the_first_failure_is_raised_in_its_turn_with_its_traceback(fn):
    got = []

    async def main():
        async for result in pexen.amap(fn, range(100), pool=ProcessWorkerPool(2)):
            got.append(result)

    with pytest.raises(ValueError, match="three is bad: 3") as raised:
        run(main())
    assert got == [0, 1, 2]
    frames = [frame.name for frame in traceback.extract_tb(raised.value.__traceback__)]
    assert fn.__name__ in frames


def test_return_exceptions_yields_them_in_place(make_pool):
    got = run(collect(pexen.amap(fail_on_three, range(8), pool=make_pool(2, 1),
                                 return_exceptions=True)))
    assert got[:3] == [0, 1, 2] and got[4:] == [4, 5, 6, 7]
    assert isinstance(got[3], ValueError)


def test_a_crashing_worker_fails_its_item():
    pool = ProcessWorkerPool(workers=2)
    got = run(collect(pexen.amap(crash_on_three, range(8), pool=pool, chunksize=1,
                                 return_exceptions=True)))
    assert [g for g in got if not isinstance(g, Exception)] == [0, 1, 2, 4, 5, 6, 7]
    assert isinstance(got[3], WorkerCrashError)


def test_a_timeout_cancels_a_coroutine_item():
    cancelled = []

    async def hang_on_three(x):
        if x == 3:
            try:
                await asyncio.Event().wait()
            finally:
                cancelled.append(x)
        return x

    got = run(collect(pexen.amap(hang_on_three, range(6), pool=AsyncWorkerPool(6),
                                 timeout=0.2, return_exceptions=True)))
    assert got[:3] == [0, 1, 2] and got[4:] == [4, 5]
    assert isinstance(got[3], TaskTimeoutError)
    assert cancelled == [3]


def test_bad_arguments_are_refused_at_once():
    with pytest.raises(TypeError, match="not callable"):
        pexen.amap(3, [1])
    with pytest.raises(TypeError, match="expected a WorkerPool"):
        pexen.astarmap(square, [(1,)], pool="threads")


# -- the event loop is never blocked ------------------------------------------------


def test_the_loop_beats_on_while_worker_processes_compute(tmp_path):
    # Each item is CPU-bound in a worker process until the loop's heartbeat
    # has beaten 20 times since it started: were the loop blocked on the
    # pool, the beats would stop and the items would give up (None).
    fn = functools.partial(tasks.busy_until_beats, counter=str(tmp_path / "beats"))

    async def main():
        async with Heartbeat(tmp_path / "beats") as heart:
            got = [x async for x in pexen.amap(fn, range(6),
                                               pool=ProcessWorkerPool(2),
                                               chunksize=1)]
        return got, heart.beats

    got, beats = run(main())
    assert got == list(range(6))
    assert beats >= 20 * 3  # 6 items on 2 workers: at least 3 rounds of 20 beats


def test_the_loop_gets_turns_while_a_long_batch_of_results_is_handed_out():
    # One chunk of 200 results comes back at once; the consumer spends 0.5 ms
    # on each and awaits nothing: amap itself must let the loop run.
    async def main():
        got, ticks = [], []
        async with Ticker() as ticker:
            async for result in pexen.amap(square, range(200),
                                           pool=ThreadWorkerPool(1),
                                           chunksize=200):
                ticks.append(ticker.ticks)
                got.append(result)
                spin(0.0005)
        return got, ticks[-1] - ticks[0]  # between the first and last results

    got, ticks_during = run(main())
    assert got == [x * x for x in range(200)]
    assert ticks_during > 0


# -- cancellation at every stage leaves nothing behind --------------------------------


def held_map(make_pool, tmp_path):
    """An amap of 0..9 whose item 1 says it started, then waits for release."""
    fn = functools.partial(tasks.held_at, at=1, started=str(tmp_path / "started"),
                           release=str(tmp_path / "release"))
    return pexen.amap(fn, range(10), pool=make_pool(1, 0), chunksize=1)


def test_closed_before_it_starts_nothing_starts(make_pool, tmp_path):
    async def main():
        agen = held_map(make_pool, tmp_path)
        await agen.aclose()
        consumer = asyncio.get_running_loop().create_task(
            collect(held_map(make_pool, tmp_path))
        )
        consumer.cancel()  # before its first step
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert pexen_threads() == []

    run(main())


def test_cancelled_mid_run_stops_the_pool(make_pool, tmp_path):
    got = []

    async def consume(agen):
        async for item in agen:
            got.append(item)

    async def main():
        consumer = asyncio.get_running_loop().create_task(
            consume(held_map(make_pool, tmp_path))
        )
        assert await apoll(lambda: (tmp_path / "started").exists())
        consumer.cancel()  # while it awaits item 1
        (tmp_path / "release").touch()  # a thread pool waits for its running item
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert pexen_threads() == []
        assert others() == set()

    run(main())
    assert got == [0]


@pytest.mark.parametrize("aclosing", [True, False], ids=["aclosing", "collected"])
def test_cancelled_while_holding_a_result_stops_the_pool(make_pool, aclosing):
    def make():
        return pexen.amap(square, range(100), pool=make_pool(1, 1), chunksize=1)

    assert cancelled_while_holding(make, aclosing) == [0]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout: 3.11+")
def test_asyncio_timeout_around_it_works(make_pool, tmp_path):
    # a thread pool waits for its running item: released once the timeout is up
    got = timed_out_after_the_first(held_map(make_pool, tmp_path),
                                    tmp_path / "release")
    assert got == [0]
