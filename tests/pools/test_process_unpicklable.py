"""ProcessWorkerPool: values that cannot travel.

Split from the pool's test file along its section banners; shared helpers
in ``tests/pools/_process.py``, the start-method fixture in tests/conftest.py.
"""


from __future__ import annotations

import sys
import threading
import traceback

import pytest

from pexen.sched import (
    PoolError,
    Sched,
)
from pexen.sched._pools.transport import RemoteTaskError, TransportError
from pexen.sched.pool import ProcessWorkerPool
from tests import _proc_tasks as tasks
from tests._pools import START_METHODS
from tests.pools._process import (
    by_task,
    fresh,
    with_kwargs,
)

# -- values that cannot travel -----------------------------------------------


def test_unpicklable_return_value(method):
    probe = fresh(tasks.return_lock)
    probe.__name__ = "probe"  # what the message calls it
    pool = ProcessWorkerPool(mp_context=method)
    results = by_task(Sched([probe, tasks.getpid]).run(pool=pool))
    res = results[probe]
    assert res.excinfo.type is TransportError
    assert isinstance(res.excinfo.val, PoolError)
    assert str(res.excinfo.val).startswith(
        "return value of task 'partial(return_lock)': cannot pickle '_thread.lock' "
        "object (at ret['lock'])"
    )
    assert res.ret is None
    assert results[tasks.getpid].excinfo is None  # the run went on
    (again,) = Sched([tasks.getpid]).run(pool=pool)
    assert again.excinfo is None  # still usable


def test_the_issues_message_for_an_unpicklable_return():

    def probe():
        return threading.Lock()

    (res,) = Sched([probe]).run(pool=ProcessWorkerPool())
    assert str(res.excinfo.val).startswith(
        "return value of task 'test_the_issues_message_for_an_unpicklable_return"
        ".<locals>.probe': cannot pickle '_thread.lock' object; "
    )


def test_unpicklable_shared_state(method):
    task = fresh(tasks.lock_in_shared)
    (res,) = Sched([task]).run(pool=ProcessWorkerPool(mp_context=method))
    assert res.excinfo.type is TransportError
    assert str(res.excinfo.val).startswith(
        "shared state of task 'partial(lock_in_shared)': cannot pickle "
        "'_thread.lock' object (at shared['lock'])"
    )
    assert res.shared == {}  # what the task started with


def test_unpicklable_exception_comes_back_as_a_stand_in(method):
    (res,) = Sched([tasks.raise_unpicklable]).run(
        pool=ProcessWorkerPool(mp_context=method)
    )
    assert res.excinfo.type is RemoteTaskError
    err = res.excinfo.val
    assert err.type_name == "tests._proc_tasks.LockedError"
    assert err.message == "cannot travel"
    assert err.reason == "cannot pickle '_thread.lock' object (at exception.lock)"
    assert str(err).startswith(
        "tests._proc_tasks.LockedError: cannot travel [the original exception could "
        "not be brought back from the worker: cannot pickle '_thread.lock' object"
    )
    assert "raise LockedError" in err.remote_traceback
    assert "in raise_unpicklable" in "".join(traceback.format_tb(res.excinfo.tb))


@pytest.mark.parametrize("method", [m for m in START_METHODS if m != "fork"])
def test_values_the_parent_cannot_unpickle(method):
    # classes that exist in the worker only
    ret, exc = tasks.return_worker_only_object, tasks.raise_worker_only_exception
    results = by_task(
        Sched([ret, exc]).run(pool=ProcessWorkerPool(2, mp_context=method))
    )
    assert results[ret].excinfo.type is TransportError
    assert str(results[ret].excinfo.val).startswith(
        "return value of task 'return_worker_only_object' cannot be unpickled here: "
        "No module named 'pexen_worker_only'"
    )
    err = results[exc].excinfo.val
    assert isinstance(err, RemoteTaskError)
    assert err.type_name == "pexen_worker_only.Oops"
    assert err.reason == "cannot be unpickled here: No module named 'pexen_worker_only'"


def test_a_task_that_cannot_be_sent_fails_alone(method):

    lock = threading.Lock()

    def holds_a_lock():
        return lock.locked()

    results = by_task(
        Sched([holds_a_lock, tasks.getpid]).run(
            pool=ProcessWorkerPool(mp_context=method)
        )
    )
    res = results[holds_a_lock]
    assert res.excinfo.type is TransportError
    assert str(res.excinfo.val).startswith(
        "task 'test_a_task_that_cannot_be_sent_fails_alone.<locals>.holds_a_lock' "
        "cannot be sent to a worker: cannot pickle '_thread.lock' object (at "
        "task.<closure 'lock'>)"
    )
    assert results[tasks.getpid].excinfo is None


def test_unpicklable_kwargs_and_presets(method):

    task = with_kwargs(tasks.echo, value=threading.Lock())
    (res,) = Sched([task]).run(pool=ProcessWorkerPool(mp_context=method))
    # kwargs live in the task's metadata, which travels with it
    assert str(res.excinfo.val).startswith(
        "task 'partial(echo)' cannot be sent to a worker: cannot pickle "
        "'_thread.lock' object (at task.pexen_meta.kwargs['value'])"
    )
    s = Sched([tasks.getpid])
    s.add_shared(lock=threading.Lock())
    (res,) = s.run(pool=ProcessWorkerPool(mp_context=method))
    assert str(res.excinfo.val).startswith(
        "shared state of task 'getpid': cannot pickle '_thread.lock' object "
        "(at shared['lock'])"
    )


@pytest.mark.parametrize("method", [m for m in START_METHODS if m != "fork"])
def test_a_task_the_worker_cannot_import(method, monkeypatch):
    import types as pytypes

    ghost = pytypes.ModuleType("pexen_ghost_module")
    exec("def haunt():\n    return 'boo'\n", ghost.__dict__)
    monkeypatch.setitem(sys.modules, "pexen_ghost_module", ghost)
    results = by_task(
        Sched([ghost.haunt, tasks.getpid]).run(
            pool=ProcessWorkerPool(mp_context=method)
        )
    )
    err = results[ghost.haunt].excinfo.val
    assert isinstance(err, TransportError)
    assert str(err).startswith("task 'haunt' cannot be unpickled in worker pid ")
    assert "ModuleNotFoundError: No module named 'pexen_ghost_module'" in str(err)
    assert results[tasks.getpid].excinfo is None


