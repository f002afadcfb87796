"""ProcessWorkerPool: the initializer and finalizer run in each worker.

The initializer (with its initargs) runs once per worker before its first
task; one that raises breaks the pool with a PoolError naming it. The
finalizer runs in each worker stopped in good order, never in one killed.
"""

from __future__ import annotations

import functools
import threading

import pytest

from pexen.sched import PoolError, Sched, WorkerCrashError
from pexen.sched.pool import ProcessWorkerPool
from tests import _proc_tasks as tasks
from tests.pools._process import by_task, fresh


def pids_in(path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def test_the_initializer_runs_once_in_each_worker_before_its_tasks(method, tmp_path):
    log = tmp_path / "init"
    pool = ProcessWorkerPool(2, 2, mp_context=method, initializer=tasks.note_pid,
                             initargs=(str(log), "a", 1))
    work = [fresh(tasks.initialized) for _ in range(12)]
    results = list(Sched(work).run(pool=pool))
    assert all(res.excinfo is None for res in results)
    seen = {res.ret[0]: res.ret[1] for res in results}
    assert all(given == ["a", 1] for given in seen.values())
    started = pids_in(log)
    assert sorted(started) == sorted(set(started))  # once per worker
    assert set(seen) <= set(started)


def test_a_failing_initializer_breaks_the_pool_naming_it(capfd):
    pool = ProcessWorkerPool(1, 1, initializer=tasks.refuse_to_start,
                             initargs=("no database here",))
    work = [fresh(tasks.getpid) for _ in range(3)]
    results = list(Sched(work).run(pool=pool))
    assert len(results) == 3
    for res in results:
        assert res.excinfo.type is PoolError
        assert (
            "its initializer 'refuse_to_start' raised in worker pid "
            in str(res.excinfo.val)
        )
        assert "RuntimeError: no database here" in str(res.excinfo.val)
    assert "Traceback" in capfd.readouterr().err


def test_the_finalizer_runs_in_each_worker_at_the_end_of_a_run(method, tmp_path):
    log = tmp_path / "fini"
    pool = ProcessWorkerPool(
        2, 2, mp_context=method,
        finalizer=functools.partial(tasks.note_pid, str(log)),
    )
    results = list(Sched([fresh(tasks.getpid) for _ in range(8)]).run(pool=pool))
    pids = {res.ret for res in results}
    finalized = pids_in(log)
    assert sorted(finalized) == sorted(set(finalized))
    assert pids <= set(finalized)


def test_the_finalizer_does_not_run_in_a_worker_that_died(tmp_path):
    log = tmp_path / "fini"
    crasher = fresh(tasks.exit_now)
    finalizer = functools.partial(tasks.note_pid, str(log))
    pool = ProcessWorkerPool(1, 1, finalizer=finalizer)
    results = by_task(Sched([crasher, fresh(tasks.getpid)]).run(pool=pool))
    dead = results[crasher].excinfo.val
    assert isinstance(dead, WorkerCrashError)
    assert dead.pid not in pids_in(log)
    assert pids_in(log)  # its replacement stopped in good order


def test_a_failing_finalizer_is_printed_and_the_run_ends(capfd):
    pool = ProcessWorkerPool(
        1, 1, finalizer=functools.partial(tasks.refuse_to_start, "teardown broke")
    )
    results = list(Sched([fresh(tasks.getpid)]).run(pool=pool))
    assert results[0].excinfo is None
    err = capfd.readouterr().err
    assert "RuntimeError: teardown broke" in err


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initializer": 3}, r"initializer=3: expected a callable or None"),
        ({"finalizer": "x"}, r"finalizer='x': expected a callable or None"),
        ({"initargs": [1]}, r"initargs=\[1\]: expected a tuple"),
    ],
)
def test_hooks_of_the_wrong_type_are_refused(kwargs, message):
    with pytest.raises(PoolError, match=message):
        ProcessWorkerPool(**kwargs)


def test_unpicklable_hooks_refuse_the_run_and_the_pool_serves_the_next():
    lock = threading.Lock()
    pool = ProcessWorkerPool(1, 1, initializer=tasks.note_pid, initargs=(lock,))
    with pytest.raises(PoolError, match=r"finalizer of the pool.*picklable"):
        next(Sched([fresh(tasks.getpid)]).run(pool=pool))
    pool.initargs = ()
    pool.initializer = None
    results = list(Sched([fresh(tasks.getpid)]).run(pool=pool))
    assert results[0].excinfo is None
