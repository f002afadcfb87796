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

import pytest

from pexen.sched import PoolError, Sched, TaskTimeoutError, WorkerCrashError
from pexen.sched._executor_pool import run_job
from pexen.sched._transport import loads_excinfo
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
    os._exit(3)


def test_broken_process_pool_fails_the_task_then_the_run():
    tasks = [exits_worker, lambda: "never sent"]
    results = []
    with ProcessPoolExecutor(1, multiprocessing.get_context("forkserver")) as executor:
        pool = ExecutorWorkerPool(executor, spare=0)
        with pytest.raises(PoolError, match=r"refused a task .*BrokenProcessPool"):
            for res in Sched(tasks).run(pool):
                results.append(res)
    [crashed] = results
    assert crashed.task is exits_worker
    assert crashed.excinfo.type is WorkerCrashError
    assert "the worker running task 'exits_worker' died" in str(crashed.excinfo.val)


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
