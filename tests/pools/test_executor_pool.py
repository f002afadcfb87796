"""ExecutorWorkerPool on the standard library's executors; what remote pools share.

The shared scheduler suite (every test of tests/test_sched.py that takes
``make_pool``) runs here too, on process executors (forkserver): this
module's ``make_pool`` overrides the pool matrix of conftest.py.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import re
import subprocess
import sys
import time
import traceback
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import pytest

from pexen import PexenWarning
from pexen.sched import PoolError, Sched, TaskTimeoutError, WorkerCrashError
from pexen.sched._naming import task_name
from pexen.sched._pools.remote import run_job
from pexen.sched._pools.transport import loads_excinfo
from pexen.sched.meta import func_meta
from pexen.sched.pool import ExecutorWorkerPool
from tests._cluster import TESTS_DIR, run_break_then_again, run_contract, shared_suite

REPO = TESTS_DIR.parent

EXECUTORS = {
    "threads": lambda: ThreadPoolExecutor(2),
    "forkserver": lambda: ProcessPoolExecutor(
        2, multiprocessing.get_context("forkserver")
    ),
    "spawn": lambda: ProcessPoolExecutor(2, multiprocessing.get_context("spawn")),
}


@pytest.fixture(params=list(EXECUTORS))
def executor(request):
    with EXECUTORS[request.param]() as executor:
        yield executor


@pytest.fixture
def make_pool():
    """``make_pool(workers, spare)`` on a process executor, shut down after the test."""
    executors = []

    def make(workers=1, spare=1):
        forkserver = multiprocessing.get_context("forkserver")
        executors.append(ProcessPoolExecutor(workers, forkserver))
        return ExecutorWorkerPool(executors[-1], spare=spare)

    yield make
    for executor in executors:
        executor.shutdown(cancel_futures=True)


SHARED_SUITE = shared_suite()
globals().update(SHARED_SUITE)  # collected here, on this module's make_pool


def test_contract(executor):
    run_contract(ExecutorWorkerPool(executor))


def test_break_then_run_again(executor):
    run_break_then_again(ExecutorWorkerPool(executor, spare=3))


def test_workers_default_to_what_the_executor_reports():
    with ThreadPoolExecutor(3) as executor:
        assert ExecutorWorkerPool(executor).workers == 3
        assert ExecutorWorkerPool(executor, workers=5, spare=0).capacity == 5

    class Reports:
        num_workers = 4

        def submit(self, fn, *args):
            raise NotImplementedError

    class Silent(Reports):
        num_workers = None

    assert ExecutorWorkerPool(Reports()).workers == 4
    assert ExecutorWorkerPool(Silent()).workers == 1


def test_rejects_what_is_not_an_executor():
    with pytest.raises(PoolError, match=r"executor=42: expected an object with a sub"):
        ExecutorWorkerPool(42)


@func_meta(priority=-1)
def exits_worker():
    os._exit(1)


@func_meta(provides=["made"])
def makes(shared):
    shared["made"] = True


@func_meta(requires=["made"])
def uses(shared):
    return shared["made"]


def numbered(count):
    return [lambda *, n=n: n for n in range(count)]


def broke_while(name):
    """The message of a task that a broken process executor held."""
    return re.compile(
        rf"the executor broke while task {re.escape(repr(name))} was running or "
        rf"queued \(BrokenProcessPool: .*\); a broken executor fails every task "
        rf"it holds and cannot tell which one broke it, so this task may be "
        rf"innocent"
    )


def not_run_after_break(name):
    """The message of a task offered to a process executor that had broken."""
    return re.compile(
        rf"task {re.escape(repr(name))} was not run: the executor broke earlier "
        rf"in the run \(BrokenProcessPool: .*\) and takes no new tasks"
    )


def check_one_result_each(results, tasks):
    """Every task of *tasks* yielded exactly one result; return them by task."""
    assert len(results) == len(tasks)
    by_id = {id(res.task): res for res in results}
    assert set(by_id) == {id(task) for task in tasks}
    return by_id


def check_the_crash(res):
    assert res.task is exits_worker
    assert res.ret is None
    assert res.excinfo.type is WorkerCrashError
    assert broke_while("exits_worker").fullmatch(str(res.excinfo.val))
    assert "the worker running" not in str(res.excinfo.val)


def test_broken_process_pool_fails_later_tasks_alone_and_the_run_ends():
    # one job at a time: exits_worker breaks the executor before the others
    # are offered, so each fails alone without being sent, and makes' dependent
    # is skipped as with any failed task
    others = [*numbered(4), makes]
    s = Sched([exits_worker, *others, uses])
    with ProcessPoolExecutor(1, multiprocessing.get_context("forkserver")) as executor:
        pool = ExecutorWorkerPool(executor, spare=0)
        with pytest.warns(PexenWarning, match=r"^1 task did not run"):
            results = list(s.run(pool))
    check_one_result_each(results, [exits_worker, *others])
    crashed, *refused = results
    check_the_crash(crashed)
    for res in refused:
        assert res.ret is None
        assert res.excinfo.type is PoolError
        assert not_run_after_break(task_name(res.task)).fullmatch(str(res.excinfo.val))
        assert isinstance(res.excinfo.val.__cause__, BrokenProcessPool)
    assert s.skipped == {
        uses: "requires tag 'made', never provided because 'makes' failed"
    }


@pytest.mark.parametrize("workers,spare", [(1, 5), (2, 2)])
def test_broken_process_pool_blames_no_task_it_held(workers, spare):
    # tasks queued in (or running on) the executor when a worker died fail
    # with it, told that the executor broke, not that their worker died; the
    # ones offered after fail alone; every task yields one result
    others = numbered(6)
    with ProcessPoolExecutor(
        workers, multiprocessing.get_context("forkserver")
    ) as executor:
        pool = ExecutorWorkerPool(executor, spare=spare)
        results = list(Sched([exits_worker, *others]).run(pool))
    by_id = check_one_result_each(results, [exits_worker, *others])
    check_the_crash(by_id[id(exits_worker)])
    for n, task in enumerate(others):
        res = by_id[id(task)]
        name, message = task_name(task), str(res.excinfo and res.excinfo.val)
        if res.excinfo is None:  # ran on the other worker before the break
            assert workers > 1
            assert res.ret == n
        elif res.excinfo.type is WorkerCrashError:
            assert broke_while(name).fullmatch(message)
        else:
            assert res.excinfo.type is PoolError
            assert not_run_after_break(name).fullmatch(message)


def test_tasks_after_a_refusal_fail_alone_and_taken_ones_run():
    # the executor takes two jobs of the batch, then refuses: those two run,
    # the refused one and every later one fail with PoolError, unsent
    class RefusesAfterTwo:
        def __init__(self, inner):
            self.inner, self.taken = inner, 0

        def submit(self, fn, *args):
            if self.taken == 2:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self.taken += 1
            return self.inner.submit(fn, *args)

    tasks = numbered(5)
    with ThreadPoolExecutor(1) as inner:
        executor = RefusesAfterTwo(inner)
        results = list(Sched(tasks).run(ExecutorWorkerPool(executor, spare=4)))
    by_id = check_one_result_each(results, tasks)
    assert [(by_id[id(t)].ret, by_id[id(t)].excinfo) for t in tasks[:2]] == [
        (0, None), (1, None),
    ]
    for task in tasks[2:]:
        res = by_id[id(task)]
        assert res.excinfo.type is PoolError
        assert str(res.excinfo.val) == (
            f"task {task_name(task)!r} was not run: {executor!r} refused a task "
            f"(RuntimeError: cannot schedule new futures after shutdown); was it "
            f"shut down?"
        )
    assert executor.taken == 2  # nothing offered after the refusal


def test_executor_shut_down_before_the_run_fails_every_task():
    executor = ThreadPoolExecutor(1)
    executor.shutdown()
    tasks = numbered(3)
    results = list(Sched(tasks).run(ExecutorWorkerPool(executor)))
    by_id = check_one_result_each(results, tasks)
    for task in tasks:
        assert by_id[id(task)].excinfo.type is PoolError
        assert "was not run: " in str(by_id[id(task)].excinfo.val)
        assert "refused a task (RuntimeError: cannot schedule new futures after " in (
            str(by_id[id(task)].excinfo.val)
        )


def test_cancelled_future_fails_its_task_with_pool_error():
    class Cancelling:
        def submit(self, fn, *args):
            future = Future()
            future.cancel()
            return future

    [res] = Sched([lambda: 1]).run(ExecutorWorkerPool(Cancelling()))
    assert res.excinfo.type is PoolError
    assert "<lambda>" in str(res.excinfo.val)
    assert "was cancelled in the executor before it finished (CancelledError)" in str(
        res.excinfo.val
    )


def test_outcome_that_cannot_be_unpickled_here_fails_its_task():
    class Garbling:
        def submit(self, fn, *args):
            future = Future()
            future.set_result((None, b"not a pickle"))
            return future

    def probe():
        return "never unpickled"

    [res] = Sched([probe]).run(ExecutorWorkerPool(Garbling()))
    assert res.task is probe
    assert res.excinfo.type.__name__ == "TransportError"
    assert "the outcome of task 'test_outcome_that_cannot_be_unpickled_here_fails" in (
        str(res.excinfo.val)
    )
    assert "cannot be unpickled here" in str(res.excinfo.val)


@func_meta(timeout=0.1)
def sleeps():
    time.sleep(60)  # a hang, cut short by the worker's alarm


def test_timeout_interrupts_a_task_in_a_worker_process():
    with ProcessPoolExecutor(1, multiprocessing.get_context("forkserver")) as executor:
        [res] = Sched([sleeps]).run(ExecutorWorkerPool(executor))
    assert res.excinfo.type is TaskTimeoutError
    assert str(res.excinfo.val) == (
        "task 'sleeps' ran longer than its timeout of 0.1 s; it was interrupted"
    )
    assert "time.sleep(60)" in "".join(traceback.format_exception(*res.excinfo))


def test_worker_that_cannot_unpickle_the_task_says_why():
    data = pickle.dumps((False, {}, {}, None))
    excinfo_blob, data_blob = run_job(b"not a pickle", data)
    assert data_blob is None
    excinfo = loads_excinfo(excinfo_blob)
    assert excinfo.type.__name__ == "TransportError"
    assert "cannot be unpickled in the worker" in str(excinfo.val)
    assert "must be importable there" in str(excinfo.val)


def test_extras_install_the_engines():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = {
        extra: {re.split(r"[\s<>=!~;\[]", req)[0] for req in reqs}
        for extra, reqs in project["optional-dependencies"].items()
    }
    assert "distributed" in extras["dask"]
    assert {"mpi4py", "mpich"} <= extras["mpi"]  # an MPI from PyPI, no system one


def test_pexen_imports_no_engine():
    code = (
        "import sys; import pexen, pexen.cli, pexen.factory; "
        "from pexen.sched import pool; "
        "[getattr(pool, name) for name in pool.__all__]; "
        "heavy = [m for m in ('dask', 'distributed', 'mpi4py') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
