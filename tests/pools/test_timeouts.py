"""Per-task ``timeout`` (SchedMeta): the process pool kills, the thread pool abandons.

Tasks that overrun wait on an Event or a file that never comes (or comes
only once the test has its result), or sleep as their *work*; nothing here
sleeps to synchronise, and no assertion is about how long anything took.
"""

from __future__ import annotations

import functools
import pathlib
import subprocess
import sys
import threading
import time
import types

import pytest

from pexen.sched import PoolWarning, Sched, TaskTimeoutError, WorkerCrashError
from pexen.sched._naming import task_name
from pexen.sched._pools.base import timeout_grace
from pexen.sched._pools.process import wire
from pexen.sched._pools.process.run import ProcessRun
from pexen.sched.meta import assign_val
from pexen.sched.pool import InlineWorkerPool, ProcessWorkerPool, ThreadWorkerPool
from tests import _proc_tasks as tasks
from tests._leaks import alive, poll
from tests._pools import START_METHODS

DEADLINE = 30.0
poll_for = functools.partial(poll, timeout=DEADLINE)


def timed(fn, timeout, **kwargs):
    task = functools.partial(fn)
    assign_val(task, timeout=timeout, kwargs=kwargs)
    return task


def plain(fn, **kwargs):
    task = functools.partial(fn)
    assign_val(task, kwargs=kwargs)
    return task


def test_grace():
    assert timeout_grace(0.1) == pytest.approx(0.06)
    assert timeout_grace(5) == pytest.approx(0.55)
    assert timeout_grace(3600) == 1.0


# -- process pool ---------------------------------------------------------------


SLOW_TO_IMPORT = """
import time

_began = time.monotonic()
while time.monotonic() - _began < 1.0:  # importing this module is slow work
    pass


def quick():
    return "done"
"""


@pytest.mark.parametrize("method", [m for m in START_METHODS if m != "fork"])
def test_loading_a_task_is_not_its_time(method, tmp_path, monkeypatch):
    """A task whose module takes a second to import, in a worker that must
    import it to unpickle the task, passes with a timeout of half a second:
    the timeout runs from the moment the task starts."""
    (tmp_path / "slow_to_import.py").write_text(SLOW_TO_IMPORT)
    monkeypatch.syspath_prepend(str(tmp_path))
    import slow_to_import

    task = timed(slow_to_import.quick, 0.5)
    (res,) = Sched([task]).run(pool=ProcessWorkerPool(mp_context=method))
    assert res.excinfo is None and res.ret == "done"


@pytest.mark.parametrize("method", START_METHODS)
def test_process_pool_kills_and_replaces_an_overrunning_worker(method):
    hang = timed(tasks.hang, 0.2)
    assign_val(hang, provides=["hung"])
    dependent = plain(tasks.getpid)
    assign_val(dependent, requires=["hung"])
    after = [plain(tasks.getpid) for _ in range(3)]
    s = Sched([hang, dependent, *after])
    pool = ProcessWorkerPool(1, 1, mp_context=method)
    with pytest.warns(match="1 task did not run"):
        results = {res.task: res for res in s.run(pool=pool)}
    res = results[hang]
    assert res.excinfo.type is TaskTimeoutError
    err = res.excinfo.val
    assert str(err) == (
        f"task 'partial(hang)' ran longer than its timeout of 0.2 s; its worker "
        f"(pid {err.pid}) was killed"
    )
    assert err.timeout == 0.2
    assert isinstance(err, TimeoutError)
    assert dependent in s.skipped  # an uncontrolled failure
    pids = {results[t].ret for t in after}
    assert err.pid not in pids
    assert all(results[t].excinfo is None for t in after)
    assert not alive(err.pid)


def test_the_clock_starts_when_the_task_does():
    # queued behind a task that works longer than its timeout, it still has
    # its whole timeout once it starts
    long_work = plain(tasks.sleep_for, seconds=0.6, ret="long")
    short = timed(tasks.echo, 0.3, value="short")
    rets = [r.ret for r in Sched([long_work, short]).run(pool=ProcessWorkerPool(1, 1))]
    assert rets == ["long", "short"]


def test_a_task_that_blocks_the_alarm_is_killed_by_the_parent():
    hang = timed(tasks.hang_with_sigalrm_blocked, 0.1)
    (res,) = Sched([hang]).run(pool=ProcessWorkerPool())
    assert res.excinfo.type is TaskTimeoutError
    assert not alive(res.excinfo.val.pid)


def test_a_task_that_blocks_the_alarm_is_killed_even_after_a_slow_load(
    tmp_path, monkeypatch
):
    """The parent looked at the job while it was loading (its clock not yet
    running); once loaded, the task's timeout is still enforced."""
    gate = tmp_path / "loaded"
    saw_loading = threading.Event()
    check = ProcessRun._check_deadlines

    def loading(run: ProcessRun) -> bool:
        return any(w.outstanding and w.slot[0] == w.outstanding[0]
                   and w.slot[2] == wire.LOADING for w in run.workers)

    def check_and_note(run: ProcessRun) -> float | None:
        before = loading(run)
        next_look = check(run)
        if before and loading(run):  # so it was loading while checked
            saw_loading.set()
        return next_look

    monkeypatch.setattr(ProcessRun, "_check_deadlines", check_and_note)
    opener = threading.Thread(target=lambda: saw_loading.wait(DEADLINE)
                              and gate.touch())
    opener.start()
    hang = timed(tasks.hang_with_sigalrm_blocked, 0.1,
                 loaded=tasks.LoadsSlowly(str(gate)))
    (res,) = Sched([hang]).run(pool=ProcessWorkerPool(mp_context="fork"))
    opener.join()
    assert saw_loading.is_set()  # a precondition
    assert res.excinfo is not None and res.excinfo.type is TaskTimeoutError


def test_a_timeout_kills_what_the_task_started(tmp_path):
    pidfile = str(tmp_path / "child.pid")
    # long enough for the task to start its subprocess on a loaded machine
    hang = timed(tasks.hang_in_subprocess, 1.5, pidfile=pidfile)
    (res,) = Sched([hang]).run(pool=ProcessWorkerPool())
    assert res.excinfo.type is TaskTimeoutError
    child = int(pathlib.Path(pidfile).read_text())
    assert poll_for(lambda: not alive(child)), "the task's subprocess outlived it"


def test_timeouts_are_not_crashes_and_the_pool_goes_on():
    # max_restarts caps deaths no task explains; timed-out workers are not that
    pool = ProcessWorkerPool(1, 0, max_restarts=0)
    hangs = [timed(tasks.hang, 0.05) for _ in range(3)]
    results = list(Sched([*hangs, tasks.getpid]).run(pool=pool))
    assert [r.excinfo.type for r in results[:3]] == [TaskTimeoutError] * 3
    assert results[3].excinfo is None
    (res,) = Sched([timed(tasks.echo, 5, value="fine")]).run(pool=pool)
    assert res.ret == "fine"  # within its timeout: untouched


def test_a_crash_is_not_mistaken_for_a_timeout():
    (res,) = Sched([timed(tasks.exit_now, 5)]).run(pool=ProcessWorkerPool())
    assert res.excinfo.type is WorkerCrashError


# -- thread pool -----------------------------------------------------------------


def thread_named(name):
    (thread,) = [t for t in threading.enumerate() if t.name == name]
    return thread


def test_thread_pool_reports_the_timeout_and_goes_on():
    gate = threading.Event()
    ran_on = {}

    def stuck():
        ran_on["stuck"] = threading.current_thread().name
        gate.wait(DEADLINE)
        return "too late"

    assign_val(stuck, timeout=0.1)

    def where():
        return threading.current_thread().name

    others = [functools.partial(where) for _ in range(4)]
    results = {}
    for res in Sched([stuck, *others]).run(pool=ThreadWorkerPool(1, 1)):
        results[res.task] = res
        if res.task is stuck:
            gate.set()  # let it return, and see it gone: nothing to abandon
            thread_named(ran_on["stuck"]).join()
    err = results[stuck].excinfo.val
    assert results[stuck].excinfo.type is TaskTimeoutError
    assert str(err) == (
        "task 'test_thread_pool_reports_the_timeout_and_goes_on.<locals>.stuck' ran "
        "longer than its timeout of 0.1 s; a thread cannot be stopped, so it runs on "
        "until the task returns, and what it returns is discarded"
    )
    assert results[stuck].ret is None
    # the run went on, on a replacement thread; the overrunning one got no more
    names = {results[t].ret for t in others}
    assert ran_on["stuck"] not in names
    assert all(name.startswith("pexen-worker-") for name in names)


def test_a_late_return_noticed_later_is_still_a_timeout():
    # the caller holds a result while the task overruns and returns: when the
    # pool next looks, it reports the timeout (as the process pool would)
    done = threading.Event()

    def slow():
        time.sleep(0.3)  # its work
        done.set()
        return "finished late"

    assign_val(slow, timeout=0.05)
    first = functools.partial(tasks.echo, value="first")
    results = []
    for res in Sched([first, slow]).run(pool=ThreadWorkerPool(1, 1)):
        results.append(res)
        if res.task is first:
            assert done.wait(DEADLINE)
    assert results[1].excinfo.type is TaskTimeoutError
    assert "(it returned after " in str(results[1].excinfo.val)


@pytest.fixture
def never_returns():
    """A task that truly never returns (an Event wait without timeout)...

    ...until the test ends: then its Event is set and its thread joined, so
    that no thread is left behind. ``never_returns.thread`` names its thread.
    """
    gate = threading.Event()

    def stuck():
        never_returns.thread = threading.current_thread().name
        never_returns.started.set()
        gate.wait()

    never_returns = types.SimpleNamespace(
        task=stuck, started=threading.Event(), gate=gate
    )
    yield never_returns
    gate.set()
    for thread in threading.enumerate():
        if thread.name == getattr(never_returns, "thread", None):
            thread.join(DEADLINE)


def abandoned_warning(task, timeout, thread, pool):
    return (
        f"{pool!r} abandons a thread still running a task that overran its "
        f"timeout: task {task_name(task)!r} (timeout {timeout:g} s) in thread "
        f"{thread!r}. A thread cannot be stopped: it runs on until its task "
        f"returns, and neither the end of the run nor the interpreter's exit "
        f"waits for it. Make the task give up in time (a timeout of its own on "
        f"what it waits for), or run it in a ProcessWorkerPool, which kills it"
    )


def test_a_task_that_never_returns_does_not_hang_the_run(never_returns):
    # TaskTimeoutError was reported, then run() waited for the thread for ever
    stuck = never_returns.task
    assign_val(stuck, timeout=0.1)
    after = [functools.partial(tasks.echo, value=n) for n in range(3)]
    pool = ThreadWorkerPool(1, 1)
    with pytest.warns(PoolWarning) as caught:
        results = {res.task: res for res in Sched([stuck, *after]).run(pool=pool)}
    assert results[stuck].excinfo.type is TaskTimeoutError
    assert [results[t].ret for t in after] == [0, 1, 2]
    assert [str(w.message) for w in caught] == [
        abandoned_warning(stuck, 0.1, never_returns.thread, pool)
    ]
    # abandoned: still running, and not waited for at exit
    thread = thread_named(never_returns.thread)
    assert thread.daemon
    assert pool.abandoned_threads == (thread,)  # what pexen run ends it all for
    never_returns.gate.set()
    thread.join(DEADLINE)
    assert pool.abandoned_threads == ()  # it returned


def test_leaving_early_abandons_a_task_past_its_timeout(never_returns):
    # the caller leaves before the timeout is reported: stop() waits for the
    # task until its timeout is up, then abandons it
    stuck = never_returns.task
    assign_val(stuck, timeout=0.2)

    def first():
        assert never_returns.started.wait(DEADLINE)
        return "first"

    assign_val(first, priority=-1)
    pool = ThreadWorkerPool(2, 0)
    with pytest.warns(PoolWarning) as caught:
        for res in Sched([first, stuck]).run(pool=pool):
            assert res.ret == "first"
            break
    assert [str(w.message) for w in caught] == [
        abandoned_warning(stuck, 0.2, never_returns.thread, pool)
    ]


ABANDONING_SCRIPT = """
import threading
from pexen.sched import Sched
from pexen.sched.meta import func_meta
from pexen.sched.pool import ThreadWorkerPool

@func_meta(timeout=0.1)
def stuck():
    threading.Event().wait()  # truly never returns

for res in Sched([stuck]).run(pool=ThreadWorkerPool()):
    print(res.excinfo.type.__name__, flush=True)
"""


def test_the_interpreter_exit_does_not_wait_for_an_abandoned_thread():
    proc = subprocess.run(
        [sys.executable, "-c", ABANDONING_SCRIPT],
        capture_output=True,
        text=True,
        timeout=DEADLINE,  # a hang fails here
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "TaskTimeoutError\n"
    assert "PoolWarning: ThreadWorkerPool(workers=1, spare='auto') abandons a thread " \
        "still running a task that overran its timeout: task 'stuck'" in proc.stderr


# -- every pool ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_pool",
    [lambda: ThreadWorkerPool(), lambda: ProcessWorkerPool()],
    ids=["thread", "process"],
)
def test_a_task_enforcing_its_own_timeout_reports_it_itself(make_pool):
    # the pools step in only a grace period later, so a subprocess started
    # with timeout= (as FilesystemFactory's scripts are) fails in its own words
    # (a second: the subprocess is killed and the error raised well within
    # that grace, even on a loaded machine)
    def runs_sleep():
        subprocess.run(["sleep", "30"], timeout=1, check=True)

    assign_val(runs_sleep, timeout=1)
    (res,) = Sched([runs_sleep]).run(pool=make_pool())
    assert res.excinfo.type is subprocess.TimeoutExpired


def test_the_inline_pool_ignores_timeouts():
    # it runs tasks in the caller's thread, for debugging: nothing to stop them
    task = timed(tasks.sleep_for, 0.01, seconds=0.05, ret="done")
    (res,) = Sched([task]).run(pool=InlineWorkerPool())
    assert res.ret == "done"
