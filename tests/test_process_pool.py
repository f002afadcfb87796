"""ProcessWorkerPool (issue 3): shipping tasks, every fault, output, shutdown.

The scheduler's own behaviour on this pool is covered by the shared suite
(``tests/_pools.py`` adds the pool under every start method to ``make_pool``).
Here: what only a pool of processes can get wrong. Every test that a start
method could change runs under all three. Tasks wait on files polled to a
deadline; no test sleeps to synchronise or asserts on timing.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import pathlib
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import threading
import traceback

import pytest

from pexen import PexenWarning
from pexen.sched import (
    PoolError,
    Sched,
    TaskRes,
    WorkerCrashError,
)
from pexen.sched._calling import execute
from pexen.sched._pools.process import default_start_method
from pexen.sched._pools.process.spawn import describe_exit
from pexen.sched._pools.transport import RemoteTaskError, TransportError
from pexen.sched.meta import assign_val
from pexen.sched.pool import ProcessWorkerPool
from tests import _proc_tasks as tasks
from tests._leaks import alive, poll
from tests._pools import START_METHODS

REPO = pathlib.Path(__file__).resolve().parent.parent
DEADLINE = 30.0
poll_for = functools.partial(poll, timeout=DEADLINE)


@pytest.fixture(params=START_METHODS)
def method(request):
    return request.param


def exists(pid: int) -> bool:
    """Whether *pid* exists at all, zombie or not."""
    return os.path.exists(f"/proc/{pid}")


def by_task(results):
    return {res.task: res for res in results}


def fresh(fn, **fields):
    """A distinct task calling *fn* (a task object added twice runs once)."""
    task = functools.partial(fn)
    if fields:
        assign_val(task, **fields)
    return task


def with_kwargs(fn, **kwargs):
    task = functools.partial(fn)
    assign_val(task, kwargs=kwargs)
    return task


# -- construction ------------------------------------------------------------


def test_defaults_and_repr():
    pool = ProcessWorkerPool()
    assert (pool.workers, pool.spare, pool.capacity) == (1, 1, 2)
    assert pool.start_method == default_start_method()
    assert repr(pool) == (
        f"ProcessWorkerPool(workers=1, spare=1, mp_context={default_start_method()!r})"
    )
    assert pool.max_restarts == 4


def test_default_start_method_is_forkserver_on_linux():
    if sys.platform.startswith("linux"):
        assert default_start_method() == "forkserver"
    else:
        assert default_start_method() in multiprocessing.get_all_start_methods()


def test_mp_context_as_name_or_context(method):
    assert ProcessWorkerPool(mp_context=method).start_method == method
    ctx = multiprocessing.get_context(method)
    assert ProcessWorkerPool(mp_context=ctx).mp_context is ctx


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (
            "threads",
            r"mp_context='threads': not a start method of this platform; "
            r"choose one of 'fork', ",
        ),
        (
            42,
            r"mp_context=42: expected a start method name .* or a multiprocessing "
            r"context",
        ),
    ],
)
def test_bad_mp_context(value, match):
    with pytest.raises(PoolError, match=match):
        ProcessWorkerPool(mp_context=value)


@pytest.mark.parametrize(
    "kwargs", [{"workers": 0}, {"spare": -1}, {"max_restarts": -1}]
)
def test_bad_counts(kwargs):
    with pytest.raises(PoolError, match=rf"{next(iter(kwargs))}=-?\d: expected an int"):
        ProcessWorkerPool(**kwargs)


def test_a_drop_in_context_object_is_used():
    ctx = tasks.WrappedContext("spawn")
    results = list(Sched([tasks.getpid]).run(pool=ProcessWorkerPool(mp_context=ctx)))
    assert results[0].ret != os.getpid()
    assert ctx.created == 1


# -- what runs, and how it travels -------------------------------------------


class Greeter:
    def __init__(self, greeting):
        self.greeting = greeting

    def greet(self):
        return f"{self.greeting} from a bound method"

    def __call__(self):
        return f"{self.greeting} from a callable object"


def test_every_kind_of_callable_runs(method):
    suffix = "!"

    def closure():
        return "closure" + suffix

    greeter = Greeter("hi")
    kinds = {
        "module function": tasks.getpid,
        "lambda": lambda: "lambda",
        "closure": closure,
        "bound method": greeter.greet,
        "partial": functools.partial(tasks.echo, value="partial"),
        "callable object": greeter,
        "builtin": os.getpid,
    }
    results = by_task(
        Sched(kinds.values()).run(pool=ProcessWorkerPool(2, mp_context=method))
    )
    rets = {name: results[task].ret for name, task in kinds.items()}
    assert all(res.excinfo is None for res in results.values()), results
    assert os.getpid() not in (rets["module function"], rets["builtin"])
    assert rets["lambda"] == "lambda"
    assert rets["closure"] == "closure!"
    assert rets["bound method"] == "hi from a bound method"
    assert rets["partial"] == "partial"
    assert rets["callable object"] == "hi from a callable object"


FACTORY_HELPERS = """
from pexen.sched.meta import func_meta

def make_task(value):
    @func_meta(priority=2)
    def generated():
        return value
    return generated
"""

FACTORY_SUITE = """
import functools, os
from pexen.sched.meta import assign_val, func_meta
from .helpers import make_task

@func_meta(provides=["built"])
def build(shared):
    shared["built by"] = "build"
    return "module function"

@func_meta(requires=["built"])
def check(shared):
    return "saw " + shared["built by"]

made = make_task("made by a helper")

class Probe:
    def __call__(self):
        return "callable object"

probe = Probe()
assign_val(probe, priority=1)

def _scale(*, value, factor):
    return value * factor

half = functools.partial(_scale, factor=0.5)
assign_val(half, kwargs={"value": 8})

lam = lambda: "lambda"
assign_val(lam, priority=3)
"""


def test_factory_made_tasks_run(method, tmp_path, monkeypatch):
    from pexen.factory import FilesystemFactory, ModTreeFactory, get_callpath

    package = f"pexen_ftree_{method}"
    root = tmp_path / package
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "helpers.py").write_text(FACTORY_HELPERS)
    (root / "suite.py").write_text(FACTORY_SUITE)
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    script = scripts / "hello.sh"
    script.write_text("#!/bin/sh\necho hello from $(basename $(pwd))\n")
    script.chmod(0o755)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        work = [
            *ModTreeFactory()(package),
            *FilesystemFactory(capture_output=True, text=True)(scripts),
        ]
        results = Sched(work).run(pool=ProcessWorkerPool(2, mp_context=method))
        rets = {
            "/".join(get_callpath(res.task)): res.ret
            for res in results
            if res.excinfo is None
        }
    finally:
        for name in [n for n in sys.modules if n.partition(".")[0] == package]:
            del sys.modules[name]
    hello = rets.pop("hello.sh")
    assert (hello.returncode, hello.stdout) == (0, "hello from scripts\n")
    assert rets == {
        f"{package}/suite/build": "module function",
        f"{package}/suite/check": "saw build",
        f"{package}/suite/made": "made by a helper",
        f"{package}/suite/probe": "callable object",
        f"{package}/suite/half": 4.0,
        f"{package}/suite/lam": "lambda",
    }


MAIN_SCRIPT = """
import functools, sys
from pexen.sched import Sched
from pexen.sched.pool import ProcessWorkerPool

class Point:
    def __init__(self, x):
        self.x = x

def top_level():
    return "top-level function of __main__"

def make_point():
    return Point(3)

class Task:
    def __call__(self):
        return "callable object of __main__"

if __name__ == "__main__":
    def guarded():
        return "function defined under the __main__ guard"

    work = [top_level, Task(), guarded, lambda: "lambda of __main__",
            functools.partial(top_level), make_point]
    pool = ProcessWorkerPool(2, mp_context=sys.argv[1])
    results = {res.task: res for res in Sched(work).run(pool=pool)}
    for task in work:
        res = results[task]
        if res.excinfo is not None:
            print(f"FAILED: {res.excinfo.val!r}")
        elif isinstance(res.ret, Point):  # the parent's own class
            print(f"a Point of __main__, x={res.ret.x}")
        else:
            print(res.ret)
"""


UNGUARDED_SCRIPT = """
import sys
from pexen.sched import Sched
from pexen.sched.pool import ProcessWorkerPool

print("the script ran", flush=True)  # once: workers do not re-import it
counter = {"n": 41}

def bump():
    counter["n"] += 1
    return counter["n"]

(res,) = Sched([bump]).run(pool=ProcessWorkerPool(mp_context=sys.argv[1]))
print(res.ret, counter["n"])
"""


def test_a_script_without_the_main_guard(method, tmp_path):
    # multiprocessing's spawn would re-run this script in every worker (and
    # fail); pexen's workers take what they need from __main__ by value
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), method],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "the script ran\n42 41\n"


@pytest.mark.parametrize("how", ["script", "stdin"])
def test_functions_of_main_run(method, how, tmp_path):
    script = tmp_path / "main_tasks.py"
    script.write_text(MAIN_SCRIPT)
    if how == "script":
        cmd, stdin = [sys.executable, str(script), method], None
    else:  # no file to re-import __main__ from: everything goes by value
        cmd, stdin = [sys.executable, "-", method], MAIN_SCRIPT
    proc = subprocess.run(
        cmd,
        input=stdin,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "top-level function of __main__",
        "callable object of __main__",
        "function defined under the __main__ guard",
        "lambda of __main__",
        "top-level function of __main__",
        "a Point of __main__, x=3",
    ]


FAILING_MAIN_SCRIPT = """
import sys, traceback
from pexen.sched import Sched
from pexen.sched.pool import ProcessWorkerPool

def check_config():
    raise ValueError("bad config")  # this line shows in the traceback

if __name__ == "__main__":
    def guarded():
        return {}["missing key"]  # and so does this one

    pool = ProcessWorkerPool(1, mp_context=sys.argv[1])
    for res in Sched([check_config, guarded]).run(pool=pool):
        traceback.print_exception(*res.excinfo, file=sys.stdout)
"""


def test_tasks_of_main_show_their_source_in_remote_tracebacks(method, tmp_path):
    # __main__ tasks go by value (cloudpickle), which names their code's file
    # "<dynamic-code>": the parent would find no source lines to show
    script = tmp_path / "failing_main.py"
    script.write_text(FAILING_MAIN_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), method], capture_output=True, text=True,
        cwd=tmp_path, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f'File "{script}", line 7, in check_config' in out, out
    assert 'raise ValueError("bad config")  # this line shows' in out, out
    assert f'File "{script}", line 11, in guarded' in out, out
    assert 'return {}["missing key"]  # and so does this one' in out, out
    assert "<dynamic-code>" not in out


def test_values_travel_by_value(method):
    preset = {"preset": [1, 2]}
    task = with_kwargs(tasks.add_to_shared, key="added", value={"nested": (1, 2)})
    s = Sched([task])
    s.add_shared(**preset)
    (res,) = s.run(pool=ProcessWorkerPool(mp_context=method))
    assert res.task is task
    assert res.ret == ["added", "preset"]
    assert res.shared == {"preset": [1, 2], "added": {"nested": (1, 2)}}
    assert preset == {"preset": [1, 2]}  # the parent's objects are untouched


def test_exception_keeps_type_chain_and_worker_frames(method):
    (res,) = Sched([tasks.raise_chained]).run(pool=ProcessWorkerPool(mp_context=method))
    assert res.excinfo.type is RuntimeError
    assert str(res.excinfo.val) == "outer"
    assert isinstance(res.excinfo.val.__cause__, KeyError)
    assert res.excinfo.tb is res.excinfo.val.__traceback__
    text = "".join(traceback.format_exception(*res.excinfo))
    assert 'in raise_chained\n    raise RuntimeError("outer") from exc' in text
    assert "in _inner_failure" in text  # the cause's frames came along
    assert "The above exception was the direct cause" in text
    frames = [frame.name for frame in traceback.extract_tb(res.excinfo.tb)]
    assert frames[-1] == "raise_chained"


def _frames_shown(text: str) -> dict[str, list[str]]:
    """Each ``File ...`` line of a formatted traceback, with the lines under it."""
    frames: dict[str, list[str]] = {}
    shown: list[str] = []
    for line in text.splitlines():
        if line.startswith('  File "'):
            shown = frames.setdefault(line, [])
        elif line.startswith("    "):
            shown.append(line)
        else:
            shown = []
    return frames


def _lookup(table, key):
    return table["known"] + table[key] * 2


def fails_in_an_expression():
    """A task (by reference: its source is shown) failing in part of a line."""
    total = 10 + _lookup({"known": 1}, "missing")
    return total


def recurse(*, depth=0):
    return recurse(depth=depth + 1)


def test_a_remote_traceback_marks_the_failing_expression(method):
    # Python 3.11+ marks the failing expression (``~~~^^^``) under a source
    # line; for frames rebuilt in the parent it must mark the same text as the
    # same failure here would, not columns of a stand-in frame
    _key, _shared, _ret, excinfo = execute(
        (0, fails_in_an_expression, False, {}, {}, None)
    )
    here = _frames_shown("".join(traceback.format_exception(*excinfo)))
    (res,) = Sched([fails_in_an_expression]).run(
        pool=ProcessWorkerPool(mp_context=method)
    )
    assert res.excinfo.type is KeyError
    text = "".join(traceback.format_exception(*res.excinfo))
    assert _frames_shown(text) == here, text
    names = [frame.name for frame in traceback.extract_tb(res.excinfo.tb)]
    assert names == ["execute", "fails_in_an_expression", "_lookup"]
    if sys.version_info >= (3, 11):  # carets were compared, not left out
        marks = [line for lines in here.values() for line in lines[1:]]
        assert len(marks) == 3, here
        assert all(set(line.strip()) <= set("^~") for line in marks), here


def test_a_deep_traceback_comes_back_whole(method):
    # RecursionError: as deep a traceback as the recursion limit allows
    (res,) = Sched([recurse]).run(pool=ProcessWorkerPool(mp_context=method))
    assert res.excinfo.type is RecursionError
    frames = traceback.extract_tb(res.excinfo.tb)
    assert len(frames) > 100
    assert frames[-1].name == "recurse"
    assert frames[-1].line == "return recurse(depth=depth + 1)"


def test_system_exit_keeps_its_code(method):
    def exits():
        sys.exit(5)

    (res,) = Sched([exits]).run(pool=ProcessWorkerPool(mp_context=method))
    assert res.excinfo.type is SystemExit
    assert res.excinfo.val.code == 5


def _held_by_one_worker(pool):
    """The keys the pool's only worker holds now (white box: a precondition)."""
    (worker,) = pool._run.workers
    return list(worker.outstanding)


def test_each_task_is_pickled_once_per_run(method):
    # *counted* is sent to a worker that dies before running it, then sent
    # again to the replacement: from the pickle made for the first dispatch
    tasks.CountingTask.pickles = 0
    first = fresh(tasks.getpid)
    crash = fresh(tasks.exit_now)
    counted = tasks.CountingTask()
    pool = ProcessWorkerPool(1, 2, mp_context=method)
    results = {}
    for res in Sched([first, crash, counted]).run(pool=pool):
        results[res.task] = res
        if res.task is first:  # the spares went to its worker as it returned
            assert len(_held_by_one_worker(pool)) == 2
    assert results[crash].excinfo.type is WorkerCrashError
    assert results[counted].excinfo is None
    assert results[counted].ret != results[first].ret  # it ran in the replacement
    assert tasks.CountingTask.pickles == 1
    list(Sched([counted]).run(pool=pool))
    assert tasks.CountingTask.pickles == 2  # once more for the second run


def test_workers_ignore_sigint_and_lead_their_own_group(method):
    (res,) = Sched([tasks.worker_facts]).run(pool=ProcessWorkerPool(mp_context=method))
    facts = res.ret
    assert facts["pid"] != os.getpid()
    assert facts["sigint_ignored"]
    assert facts["own_group"]
    assert facts["name"].startswith("pexen-worker-")


def test_a_spare_goes_to_the_worker_that_frees_up_first(tmp_path, method):
    # the long task must not hold the spares back: the other worker takes them
    flag = str(tmp_path / "long")
    long = with_kwargs(tasks.write_pid_and_wait, path=flag)
    shorts = [with_kwargs(tasks.echo, value=n) for n in range(3)]
    order = []
    for res in Sched([long, *shorts]).run(
        pool=ProcessWorkerPool(2, 2, mp_context=method)
    ):
        order.append(res.ret if res.task is not long else "long")
        if len(order) == len(shorts):
            pathlib.Path(flag + ".go").touch()
    assert order == [0, 1, 2, "long"]


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
    import threading

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
    import threading

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
    import threading

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
            assert len(_held_by_one_worker(pool)) == 3  # the crash and 2 spares
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


# -- output ------------------------------------------------------------------


def test_output_and_logs_reach_the_parent_before_the_result(method, capfd, caplog):
    caplog.set_level(logging.INFO, logger="pexen.tests.tasks")
    task = with_kwargs(tasks.print_and_log, tag="T1")
    seen = {}
    for res in Sched([task]).run(pool=ProcessWorkerPool(mp_context=method)):
        seen["ret"] = res.ret
        seen["out"], seen["err"] = capfd.readouterr()
        seen["records"] = list(caplog.records)
    assert seen["ret"] == "T1"
    out = seen["out"].splitlines()
    for line in ["out T1", "partial T1", "raw fd T1", "subprocess T1"]:
        assert line in out
    assert "err T1" in seen["err"].splitlines()
    records = [r for r in seen["records"] if r.name == "pexen.tests.tasks"]
    assert [(r.levelname, r.getMessage()) for r in records] == [
        ("INFO", "info T1"),
        ("ERROR", "failure T1"),
    ]  # DEBUG stays in the worker
    assert {r.pexen_task for r in records} == {"partial(print_and_log)"}
    assert records[0].process != os.getpid()
    assert records[1].exc_text.endswith("ZeroDivisionError: logged")


def test_output_goes_to_the_current_sys_stdout(method, capsys):
    task = with_kwargs(tasks.print_and_log, tag="T2")
    list(Sched([task]).run(pool=ProcessWorkerPool(mp_context=method)))
    out, err = capsys.readouterr()  # Python-level capture sees it too
    assert "out T2\n" in out and "subprocess T2\n" in out
    assert "err T2\n" in err


def test_a_chatty_task_never_waits_for_the_caller(tmp_path, method, capfd):
    # while the caller holds a result, a task printing far more than a pipe
    # holds still finishes: the relay thread drains its output meanwhile
    marker = tmp_path / "chatty-done"
    chatty = with_kwargs(tasks.chatty, nbytes=4 << 20, marker=str(marker))
    first = fresh(tasks.getpid)
    rets = []
    for res in Sched([first, chatty]).run(
        pool=ProcessWorkerPool(1, 1, mp_context=method)
    ):
        rets.append(res.ret)
        if res.task is first:
            assert poll_for(marker.exists)
    assert rets[1] == "chatty"
    out, _err = capfd.readouterr()
    assert out.count("x" * 99 + "\n") == (4 << 20) // 100


# -- shutdown ----------------------------------------------------------------


def _worker_pids(tmp_path, n):
    flags = [str(tmp_path / f"w{i}") for i in range(n)]
    work = [with_kwargs(tasks.write_pid_and_wait, path=flag) for flag in flags]
    return flags, work


@pytest.mark.parametrize("how", ["break", "close", "throw", "raise"])
def test_leaving_early_leaves_no_process(tmp_path, method, how):
    flags, blockers = _worker_pids(tmp_path, 2)
    quick = fresh(tasks.getpid)
    queued = [fresh(tasks.getpid) for _ in range(3)]
    s = Sched([quick, *blockers, *queued])
    pool = ProcessWorkerPool(3, 2, mp_context=method)
    pids = []

    def note_pids(res):
        assert res.task is quick
        assert poll_for(lambda: all(os.path.exists(f) for f in flags))
        pids.extend([res.ret] + [int(pathlib.Path(f).read_text()) for f in flags])

    if how == "break":
        for res in s.run(pool=pool):
            note_pids(res)
            break
    elif how == "raise":  # the loop's frame drops the generator, which closes
        with pytest.raises(ZeroDivisionError):
            for res in s.run(pool=pool):
                note_pids(res)
                raise ZeroDivisionError("in the caller's loop")
    else:
        gen = s.run(pool=pool)
        note_pids(next(gen))
        if how == "close":
            gen.close()
        else:
            with pytest.raises(ZeroDivisionError):
                gen.throw(ZeroDivisionError("in the caller's loop"))
    # the blockers were running: they were killed, not waited for
    assert not [pid for pid in pids if exists(pid)]
    assert not [t for t in threading.enumerate() if t.name.startswith("pexen-")]
    assert set(s.skipped) >= set(blockers)


def test_stop_does_not_wait_for_threads_a_task_left_behind(method):
    # a worker leaving normally would wait for a non-daemon thread for ever;
    # the pool's shutdown must not (a hang here ends in pytest's timeout)
    (res,) = Sched([tasks.leave_a_thread_behind]).run(
        pool=ProcessWorkerPool(mp_context=method)
    )
    assert res.ret == "left"


CTRL_C_SCRIPT = """
import functools, os, pathlib, sys
from pexen.sched import Sched
from pexen.sched.meta import assign_val
from pexen.sched.pool import ProcessWorkerPool
from tests import _proc_tasks as tasks

def main():
    here = pathlib.Path(sys.argv[2])
    work = []
    for n in range(4):
        task = functools.partial(tasks.write_pid_and_wait)
        assign_val(task, kwargs={"path": str(here / f"w{n}")})
        work.append(task)
    pool = ProcessWorkerPool(2, 1, mp_context=sys.argv[1])
    try:
        for res in Sched(work).run(pool=pool):
            print("unexpected result", res, flush=True)
    except KeyboardInterrupt:
        from tests._leaks import cpython_helpers, descendants
        left = list(descendants().items())  # grandchildren too
        helpers = cpython_helpers()
        (here / "report").write_text(repr({"left": left, "helpers": helpers}))
        raise

if __name__ == "__main__":
    main()
"""


def assert_no_shared_memory_left(pid: int, stderr: str) -> None:
    """Nothing of process *pid* is left in /dev/shm, and nothing leaked.

    /dev/shm is the whole machine's, so only names that are *pid*'s count:
    multiprocessing's heap arenas (``pym-<pid>-...``). Its semaphores have
    random names; the resource tracker, whose stderr is *stderr*, warns of
    any left behind when the process ends.
    """
    try:
        names = os.listdir("/dev/shm")
    except OSError:
        names = []
    assert not [name for name in names if name.startswith(f"pym-{pid}-")]
    assert "leaked" not in stderr, stderr


def test_ctrl_c_on_a_real_process_leaves_nothing(tmp_path, method):
    script = tmp_path / "suite.py"
    script.write_text(CTRL_C_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), method, str(tmp_path)],
        cwd=REPO,
        start_new_session=True,  # its own process group, like a terminal's
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        flags = [tmp_path / f"w{n}" for n in range(2)]  # both workers are busy
        assert poll_for(lambda: all(f.exists() for f in flags))
        pids = [int(f.read_text()) for f in flags]
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGINT, err  # died of the KeyboardInterrupt
    assert b"KeyboardInterrupt" in err
    assert b"unexpected result" not in out
    report = eval((tmp_path / "report").read_text())
    assert report["left"] == []  # no worker, no zombie, once the pool stopped
    # the workers are gone, and so are CPython's helpers once their user exits
    assert poll_for(lambda: not any(exists(p) for p in pids + report["helpers"]))
    assert_no_shared_memory_left(proc.pid, err.decode(errors="replace"))


NORMAL_END_SCRIPT = """
import functools, os, pathlib, sys
from pexen.sched import Sched
from pexen.sched.pool import ProcessWorkerPool
from tests import _proc_tasks as tasks
from tests._leaks import cpython_helpers, descendants

if __name__ == "__main__":
    pool = ProcessWorkerPool(2, 1, mp_context=sys.argv[1])
    pids = set()
    for _ in range(2):  # one pool, two runs
        work = [functools.partial(tasks.getpid) for _ in range(6)]
        pids |= {res.ret for res in Sched(work).run(pool=pool)}
    report = {"workers": sorted(pids), "left": list(descendants().items()),
              "helpers": cpython_helpers(), "pid": os.getpid()}
    pathlib.Path(sys.argv[2]).write_text(repr(report))
"""


def test_a_normal_end_in_a_real_process_leaves_nothing(tmp_path, method):
    script = tmp_path / "normal.py"
    script.write_text(NORMAL_END_SCRIPT)
    report_path = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, str(script), method, str(report_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = eval(report_path.read_text())
    assert report["workers"] and os.getpid() not in report["workers"]
    assert report["left"] == []  # after the runs: no worker, no zombie
    assert not any(alive(pid) for pid in report["workers"])
    # CPython's helpers (the forkserver, the resource tracker) end with it
    assert poll_for(lambda: not any(exists(p) for p in report["helpers"]))
    assert_no_shared_memory_left(report["pid"], proc.stderr)


SUSPENDED_SCRIPT = """
import functools, sys
from pexen.sched import Sched
from pexen.sched.pool import ProcessWorkerPool
from tests import _proc_tasks as tasks

if __name__ == "__main__":
    work = [functools.partial(tasks.getpid) for _ in range(10)]
    gen = Sched(work).run(pool=ProcessWorkerPool(2, mp_context=sys.argv[1]))
    print(next(gen).ret, flush=True)
    # the interpreter exits with the run suspended in a global
"""


def test_exiting_with_a_run_suspended_does_not_hang(tmp_path, method):
    # multiprocessing's exit hook joins worker processes, which would wait for
    # jobs for ever: the pool's own hook stops them first
    script = tmp_path / "suspended.py"
    script.write_text(SUSPENDED_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), method],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    pid = int(proc.stdout)
    assert poll_for(lambda: not alive(pid))


KILLED_PARENT_SCRIPT = """
import functools, pathlib, sys
from pexen.sched import Sched
from pexen.sched.meta import assign_val
from pexen.sched.pool import ProcessWorkerPool
from tests import _proc_tasks as tasks

if __name__ == "__main__":
    here = pathlib.Path(sys.argv[2])
    work = []
    for n in range(2):
        task = functools.partial(tasks.write_pid_and_wait)
        assign_val(task, kwargs={"path": str(here / f"w{n}")})
        work.append(task)
    list(Sched(work).run(pool=ProcessWorkerPool(2, 0, mp_context=sys.argv[1])))
"""


def test_workers_die_with_a_killed_parent(tmp_path, method):
    if not sys.platform.startswith("linux"):
        pytest.skip("workers follow their parent through SIGIO on Linux")
    script = tmp_path / "parent.py"
    script.write_text(KILLED_PARENT_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), method, str(tmp_path)],
        cwd=REPO,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        flags = [tmp_path / f"w{n}" for n in range(2)]
        assert poll_for(lambda: all(f.exists() for f in flags))
        pids = [int(f.read_text()) for f in flags]
        proc.kill()  # SIGKILL: no finally, no atexit
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert poll_for(lambda: not any(alive(pid) for pid in pids)), "orphaned workers"


def test_results_pickle_like_task_res(method):
    (res,) = Sched([tasks.raise_value_error]).run(
        pool=ProcessWorkerPool(mp_context=method)
    )
    again = pickle.loads(pickle.dumps(TaskRes(None, res.shared, res.ret, None)))
    assert again == TaskRes(None, {}, None, None)
    assert isinstance(res.excinfo.val, ValueError)


def test_script_example_with_processes_prints_in_order(tmp_path, method):
    # a hello-world script: what the worker prints comes before the result line
    script = tmp_path / "hello.py"
    script.write_text(
        textwrap.dedent(f"""
        from pexen.sched import Sched
        from pexen.sched.pool import ProcessWorkerPool

        def greet():
            print("hello from the worker")
            return "done"

        if __name__ == "__main__":
            pool = ProcessWorkerPool(mp_context={method!r})
            for res in Sched([greet]).run(pool=pool):
                print("result:", res.ret)
    """)
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello from the worker\nresult: done\n"
