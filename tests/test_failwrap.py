"""task_fail_wrap: the wrapper's metadata is an equal copy, not the same object."""

from __future__ import annotations

import asyncio
import functools

import pytest

from pexen import sched
from pexen.sched import task_fail_wrap
from pexen.sched.meta import SchedMeta, assign_meta, assign_val, func_meta, has_meta
from pexen.sched.meta import retrieve_meta as meta_of


def base(shared, n):
    return n


def decorated_function():
    return func_meta(requires=["db"], kwargs={"n": 1})(
        functools.wraps(base)(lambda shared, n: n))


def decorated_partial():
    return func_meta(requires=["db"], kwargs={"n": 1})(functools.partial(base))


def bound_method():
    class Holder:  # a fresh class each time: the metadata is its function's
        @func_meta(requires=["db"], kwargs={"n": 1})
        def method(self, shared, n):
            return n

    return Holder().method


@pytest.mark.parametrize("make", [decorated_function, decorated_partial, bound_method])
@pytest.mark.parametrize("wrap", [task_fail_wrap, task_fail_wrap(deps_ok=False)],
                         ids=["bare", "options"])
def test_the_wrapper_has_its_own_copy_of_the_metadata(make, wrap):
    task = make()
    wrapped = wrap(task)
    original = SchedMeta(requires={"db"}, kwargs={"n": 1})
    assert meta_of(wrapped) == meta_of(task) == original
    assert meta_of(wrapped) is not meta_of(task)

    # changing the wrapper's metadata in place leaves the task's alone ...
    assign_val(wrapped, priority=5, provides=["cache"])
    meta_of(wrapped).requires.add("net")
    meta_of(wrapped).kwargs["n"] = 2
    assert meta_of(task) == original
    # ... and the other way round
    assign_val(task, timeout=9)
    meta_of(task).uses.add("disk")
    assert meta_of(wrapped) == SchedMeta(requires={"db", "net"}, provides={"cache"},
                                         priority=5, kwargs={"n": 2})
    # replacing the metadata of one does not reach the other either
    assign_meta(wrapped, SchedMeta(priority=7))
    assert meta_of(task).priority == 0
    assert meta_of(task).timeout == 9


def test_each_task_runs_with_its_own_metadata():
    @func_meta(kwargs={"n": 1})
    def task(shared, n):
        return n

    wrapped = task_fail_wrap(task)
    assign_val(wrapped, kwargs={"n": 2})
    results = sched.Sched([task, wrapped]).run(pool=sched.pool.InlineWorkerPool())
    assert {res.task: res.ret for res in results} == {task: 1, wrapped: 2}


def test_a_task_without_metadata_gives_a_wrapper_without_metadata():
    def plain():
        return 1

    assert not has_meta(task_fail_wrap(plain))
    assert not has_meta(plain)


async def _async_fails(shared):
    await asyncio.sleep(0)
    raise OSError("disk full")


class _AsyncCall:
    async def __call__(self, shared):
        await asyncio.sleep(0)
        raise OSError("disk full")


@pytest.mark.parametrize("make", [lambda: _async_fails, lambda: _AsyncCall()],
                         ids=["async-function", "async-callable-object"])
def test_an_async_task_fails_in_a_controlled_way(make_pool, make):
    wrapped = task_fail_wrap(make(), locks_ok=False)
    assign_val(wrapped, provides=["x"])
    dependent = functools.partial(base, n=2)
    assign_val(dependent, requires=["x"])
    results = list(sched.Sched([wrapped, dependent]).run(pool=make_pool(1, 1)))
    assert [res.task for res in results] == [wrapped, dependent]
    exc = results[0].excinfo.val
    assert type(exc) is sched.TaskFailError
    assert str(exc) == "OSError: disk full"
    assert (exc.deps_ok, exc.locks_ok) == (True, False)
    assert type(exc.__cause__) is OSError
    assert results[1].ret == 2  # its provides counted as met
