"""ProcessWorkerPool: workers that die.

Split from the pool's test file along its section banners; shared helpers
in ``tests/pools/_process.py``, the start-method fixture in tests/conftest.py.
"""


from __future__ import annotations

import functools
import multiprocessing
import os
import pathlib
import re
import signal
import traceback

import pytest

from pexen import PexenWarning
from pexen.sched import (
    PoolError,
    Sched,
    WorkerCrashError,
)
from pexen.sched._pools.process.spawn import describe_exit
from pexen.sched.meta import assign_val
from pexen.sched.pool import ProcessWorkerPool
from tests import _proc_tasks as tasks
from tests._leaks import alive
from tests.pools._process import (
    by_task,
    fresh,
    held_by_one_worker,
    poll_for,
    with_kwargs,
)

# -- workers that die --------------------------------------------------------


CRASHES = {
    "os._exit": (functools.partial(tasks.exit_now, code=7), 7, "exited with code 7"),
    "SIGKILL": (tasks.kill_self, -signal.SIGKILL, "was killed by signal SIGKILL"),
    "SIGSEGV": (
        tasks.segfault,
        -signal.SIGSEGV,
        "was killed by signal SIGSEGV (a segmentation fault",
    ),
}


@pytest.mark.parametrize("cause", list(CRASHES))
def test_a_crash_fails_its_task_and_the_run_goes_on(method, cause):
    crasher, exitcode, words = CRASHES[cause]
    crasher = functools.partial(crasher)
    assign_val(crasher, provides=["crashed"], claims=["res"])
    dependent = fresh(tasks.getpid, requires=["crashed"])
    rival = fresh(tasks.getpid, claims=["res"])
    others = [fresh(tasks.getpid) for _ in range(4)]
    s = Sched([crasher, dependent, rival, *others])
    with pytest.warns(PexenWarning, match="2 tasks did not run"):
        results = by_task(s.run(pool=ProcessWorkerPool(2, 2, mp_context=method)))
    res = results[crasher]
    assert res.excinfo.type is WorkerCrashError
    err = res.excinfo.val
    assert str(err).startswith(
        f"task 'partial({crasher.func.__name__})' crashed its worker: worker pid "
        f"{err.pid} {words}"
    )
    assert err.exitcode == exitcode
    assert traceback.format_tb(res.excinfo.tb)  # a real traceback
    # an uncontrolled failure: dependents and lock rivals do not run
    assert set(s.skipped) == {dependent, rival}
    pids = {results[t].ret for t in others}
    assert all(results[t].excinfo is None for t in others)
    assert err.pid not in pids  # replaced
    assert not alive(err.pid)


def test_spares_held_by_a_dead_worker_are_not_lost(method):
    # when *first* returns, the crash and two spares go to its worker together;
    # the crash kills it with the spares still queued in it
    first = fresh(tasks.getpid)
    crash = fresh(tasks.exit_now)
    spares = [with_kwargs(tasks.value_and_pid, value=n) for n in range(3)]
    pool = ProcessWorkerPool(1, 3, mp_context=method)
    results = {}
    for res in Sched([first, crash, *spares]).run(pool=pool):
        results[res.task] = res
        if res.task is first:
            assert len(held_by_one_worker(pool)) == 3  # the crash and 2 spares
    assert results[crash].excinfo.type is WorkerCrashError
    assert [results[t].ret[0] for t in spares] == [0, 1, 2]
    assert results[first].ret not in {results[t].ret[1] for t in spares}


def test_a_task_that_crashes_its_worker_runs_once(tmp_path, method):
    # never retried: a task that kills every worker it meets cannot loop, and
    # crashes it caused do not count against max_restarts
    log = tmp_path / "runs"
    crashers = [with_kwargs(tasks.note_and_exit, path=str(log)) for _ in range(3)]
    after = fresh(tasks.getpid)
    pool = ProcessWorkerPool(1, 1, mp_context=method, max_restarts=0)
    results = by_task(Sched([*crashers, after]).run(pool=pool))
    errors = [results[t].excinfo.val for t in crashers]
    assert all(isinstance(err, WorkerCrashError) for err in errors)
    assert [err.exitcode for err in errors] == [9, 9, 9]
    pids = log.read_text().split()
    assert pids == [str(err.pid) for err in errors]  # one run each, one worker each
    assert len(set(pids)) == 3
    assert results[after].excinfo is None


@pytest.mark.parametrize("child_exits", [False, True])
def test_a_task_that_forks_gets_one_result(method, child_exits):
    # the forked copy of the worker comes back into the worker's loop: it must
    # neither answer for the job nor take the worker's next message (STOP)
    forker = with_kwargs(tasks.fork_and_return, child_exits=child_exits)
    others = [fresh(tasks.getpid) for _ in range(4)]
    results = list(Sched([forker, *others]).run(
        pool=ProcessWorkerPool(1, 1, mp_context=method)))
    assert sorted(map(id, (r.task for r in results))) == sorted(
        map(id, [forker, *others]))
    assert all(r.excinfo is None for r in results)
    (forked,) = [r.ret for r in results if r.task is forker]
    assert forked > 0  # the worker's answer, not its copy's (0)


def test_a_worker_killed_from_outside(tmp_path, method):
    # the OOM killer's way: SIGKILL from another process, mid-task
    flag = str(tmp_path / "victim")
    victim = with_kwargs(tasks.write_pid_and_wait, path=flag)
    bystander = fresh(tasks.getpid)
    gen = Sched([victim, bystander]).run(
        pool=ProcessWorkerPool(2, 0, mp_context=method)
    )
    first = next(gen)
    assert first.task is bystander
    assert poll_for(lambda: os.path.exists(flag))
    pid = int(pathlib.Path(flag).read_text())
    os.kill(pid, signal.SIGKILL)
    (res,) = list(gen)
    assert res.excinfo.type is WorkerCrashError
    assert f"worker pid {pid} was killed by signal SIGKILL (sent by someone" in str(
        res.excinfo.val
    )


def test_an_idle_worker_that_dies_is_replaced_quietly(method):
    pool = ProcessWorkerPool(1, 0, mp_context=method)
    work = [fresh(tasks.getpid) for _ in range(3)]
    pids = []
    for res in Sched(work).run(pool=pool):
        pids.append(res.ret)
        if len(pids) == 1:  # between tasks: no task to blame
            os.kill(res.ret, signal.SIGKILL)
            assert poll_for(lambda: not alive(pids[0]))
    assert pids[0] != pids[1] == pids[2]


def test_idle_deaths_are_capped(method):
    pool = ProcessWorkerPool(1, 0, mp_context=method, max_restarts=0)
    work = [fresh(tasks.getpid) for _ in range(3)]
    results = []
    for res in Sched(work).run(pool=pool):
        results.append(res)
        if len(results) == 1:
            os.kill(res.ret, signal.SIGKILL)
            assert poll_for(lambda: not alive(results[0].ret))
    assert results[0].excinfo is None
    for res in results[1:]:
        assert res.excinfo.type is PoolError
        assert (
            " was not run: the pool gave up after 1 worker processes died "
            "without running a task (max_restarts=0); the last, pid "
            in str(res.excinfo.val)
        )


def test_workers_that_die_at_start_up_do_not_loop_for_ever():
    pool = ProcessWorkerPool(2, 1, mp_context=tasks.DyingContext(), max_restarts=3)
    work = [fresh(tasks.getpid) for _ in range(4)]
    results = list(Sched(work).run(pool=pool))  # each fails; none is skipped
    assert len(results) == 4
    for res in results:
        assert res.excinfo.type is PoolError
        # 4 deaths, or 5 when the two workers' last deaths are seen together
        assert re.search(
            r"^task 'partial\(getpid\)' was not run: the pool gave up after [45] "
            r"worker processes died without running a task \(max_restarts=3\); the "
            r"last, pid \d+, exited with code 3; its stderr above may say why$",
            str(res.excinfo.val),
        )


class _NoProcesses:
    """A context that cannot start a process (the system is out of them)."""

    def __init__(self):
        self._ctx = multiprocessing.get_context("spawn")

    def Process(self, *args, **kwargs):
        raise BlockingIOError(11, "Resource temporarily unavailable")

    def __getattr__(self, name):
        return getattr(self._ctx, name)


def test_workers_that_cannot_be_started_fail_the_tasks_not_the_run():
    pool = ProcessWorkerPool(2, mp_context=_NoProcesses(), max_restarts=2)
    results = list(Sched([fresh(tasks.getpid) for _ in range(3)]).run(pool=pool))
    assert len(results) == 3
    for res in results:
        assert res.excinfo.type is PoolError
        assert re.search(
            r"the pool gave up after 3 worker processes died without running a task "
            r"\(max_restarts=2\); the last could not be started: cannot start worker "
            r"process 'pexen-worker-\d+\.\d+': \[Errno 11\] Resource temporarily "
            r"unavailable$",
            str(res.excinfo.val),
        )


def test_the_pool_serves_another_run_after_crashes(method):
    pool = ProcessWorkerPool(1, 1, mp_context=method)
    (res,) = Sched([fresh(tasks.exit_now)]).run(pool=pool)
    assert res.excinfo.type is WorkerCrashError
    (res,) = Sched([fresh(tasks.getpid)]).run(pool=pool)
    assert res.excinfo is None


def test_describe_exit():
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(-signal.SIGTERM) == "was killed by signal SIGTERM"
    assert describe_exit(-200) == "was killed by signal 200"
    assert describe_exit(None) == "vanished (exit status unknown)"


