"""``pexen.map`` and ``pexen.starmap`` (SPEC §9): one function over many inputs."""

from __future__ import annotations

import itertools
import os
import traceback

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pexen
from pexen.sched import PoolError, TaskTimeoutError, WorkerCrashError
from pexen.sched.pool import InlineWorkerPool, ProcessWorkerPool, ThreadWorkerPool
from tests import _proc_tasks as tasks


def square(x):
    return x * x


def fail_on_three(x):
    if x == 3:
        raise ValueError(f"three is bad: {x}")
    return x


def crash_on_three(x):
    if x == 3:
        os._exit(9)
    return x


def hang_on_three(x):
    if x == 3:
        tasks.hang()
    return x


def test_results_come_in_input_order_on_every_pool(make_pool):
    pool = make_pool(workers=2, spare=1)
    assert list(pexen.map(square, range(200), pool=pool)) == [x * x for x in range(200)]


def test_unordered_results_are_all_there(make_pool):
    got = list(pexen.map(square, range(200), pool=make_pool(workers=2, spare=1),
                         ordered=False))
    assert sorted(got) == [x * x for x in range(200)]


def test_several_iterables_stop_with_the_shortest_and_starmap_unpacks():
    assert list(pexen.map(pow, [2, 3, 4], [3, 2], pool=ThreadWorkerPool(2))) == [8, 9]
    assert list(pexen.starmap(pow, [(2, 3), (3, 2)], pool=InlineWorkerPool())) == [8, 9]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers()), st.one_of(st.none(), st.integers(1, 9)),
       st.booleans())
def test_it_is_the_builtin_map_on_threads(items, chunksize, ordered):
    got = list(pexen.map(square, items, pool=ThreadWorkerPool(2),
                         chunksize=chunksize, ordered=ordered))
    expected = [square(x) for x in items]
    assert got == expected if ordered else sorted(got) == sorted(expected)


def test_inputs_are_read_lazily_and_an_endless_input_works():
    read = []

    def endless():
        for n in itertools.count():
            read.append(n)
            yield n

    pool = ThreadWorkerPool(workers=2, spare=1)
    results = pexen.map(square, endless(), pool=pool, chunksize=4)
    first = list(itertools.islice(results, 10))
    assert first == [x * x for x in range(10)]
    # at most the capacity's worth of chunks read ahead of what was taken
    assert len(read) <= 10 + pool.capacity * 4 + 4
    results.close()


def test_the_first_failure_is_raised_in_its_turn_with_the_workers_traceback(method):
    pool = ProcessWorkerPool(workers=2, mp_context=method)
    got = []
    with pytest.raises(ValueError, match="three is bad: 3") as raised:
        for result in pexen.map(fail_on_three, range(100), pool=pool):
            got.append(result)
    assert got == [0, 1, 2]  # everything before it, in order
    frames = [frame.name for frame in traceback.extract_tb(raised.value.__traceback__)]
    assert "fail_on_three" in frames


def test_unordered_the_failure_comes_when_it_is_found():
    results = pexen.map(fail_on_three, range(10), pool=ThreadWorkerPool(1),
                        ordered=False, chunksize=1)
    with pytest.raises(ValueError):
        list(results)


def test_return_exceptions_yields_them_in_place(make_pool):
    got = list(pexen.map(fail_on_three, range(8), pool=make_pool(workers=2, spare=1),
                         return_exceptions=True))
    assert got[:3] == [0, 1, 2] and got[4:] == [4, 5, 6, 7]
    assert isinstance(got[3], ValueError)


@pytest.mark.parametrize("method", ["forkserver"])
def test_a_crashing_item_fails_alone_with_chunks_of_one(method):
    pool = ProcessWorkerPool(workers=2, mp_context=method)
    got = list(pexen.map(crash_on_three, range(8), pool=pool, chunksize=1,
                         return_exceptions=True))
    assert [g for g in got if not isinstance(g, Exception)] == [0, 1, 2, 4, 5, 6, 7]
    assert isinstance(got[3], WorkerCrashError)


def test_a_crash_is_raised_without_return_exceptions():
    pool = ProcessWorkerPool(workers=1)
    with pytest.raises(WorkerCrashError):
        list(pexen.map(crash_on_three, range(8), pool=pool))


def test_timeout_is_each_items():
    pool = ProcessWorkerPool(workers=2)
    got = list(pexen.map(hang_on_three, range(6), pool=pool, timeout=0.5,
                         return_exceptions=True))
    assert got[:3] == [0, 1, 2] and got[4:] == [4, 5]
    assert isinstance(got[3], TaskTimeoutError)


def test_bad_arguments_are_refused_at_once():
    with pytest.raises(TypeError, match="not callable"):
        pexen.map(3, [1])
    with pytest.raises(PoolError, match="chunksize=0"):
        pexen.map(square, [1], chunksize=0)
    with pytest.raises(TypeError, match="expected a WorkerPool"):
        pexen.map(square, [1], pool="threads")


def test_automatic_chunks_grow_for_tiny_items_and_stay_one_for_long_ones():
    from pexen._map import CHUNK_LIMIT, CHUNK_TARGET, _AutoChunk

    auto = _AutoChunk()
    sizes = []
    for _ in range(20):
        auto.learn(auto.size, 1e-7 * auto.size)
        sizes.append(auto.size)
    assert sizes[:4] == [2, 4, 8, 16]  # doubling
    assert sizes[-1] == CHUNK_LIMIT
    auto.learn(1, CHUNK_TARGET * 2)  # a long item: back to one at once
    assert auto.size == 1


def test_import_pexen_does_not_import_the_map_machinery():
    import subprocess
    import sys

    code = ("import sys, pexen; assert 'pexen._map' not in sys.modules; "
            "assert callable(pexen.map) and 'pexen._map' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
