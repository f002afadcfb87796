"""ProcessWorkerPool: what runs, and how it travels.

Split from the pool's test file along its section banners; shared helpers
in ``tests/pools/_process.py``, the start-method fixture in tests/conftest.py.
"""


from __future__ import annotations

import functools
import os
import pathlib
import subprocess
import sys
import traceback

import pytest

from pexen.sched import (
    Sched,
    WorkerCrashError,
)
from pexen.sched._calling import execute
from pexen.sched._pools.base import Job
from pexen.sched.pool import ProcessWorkerPool
from tests import _proc_tasks as tasks
from tests.pools._process import (
    by_task,
    fresh,
    held_by_one_worker,
    with_kwargs,
)

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
    excinfo = execute(Job(0, fails_in_an_expression, False, {}, {}, None)).excinfo
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


def raise_long_chain(*, links):
    """Fail with a chain of *links* exceptions, each the cause of the next."""
    exc = ValueError(0)
    for n in range(1, links):
        cause, exc = exc, ValueError(n)
        exc.__cause__ = cause
    raise exc


def raise_looped_chain():
    """Fail with a chain that loops: a's context is b, and b's is a."""
    a, b = KeyError("a"), KeyError("b")
    a.__context__, b.__context__ = b, a
    raise a


def _causes(exc):
    found = []
    while exc is not None:
        found.append(exc)
        exc = exc.__cause__
    return found


def test_long_and_looped_chains_come_back_cut_to_fit():
    # a chain of 500 or 5,000 links (too deep for pickle) or one that loops
    # used to come back as the exception alone; now the first 100 links come
    # back, and the last says how many more were cut
    long_ones = [with_kwargs(raise_long_chain, links=n) for n in (500, 5000)]
    s = Sched([*long_ones, raise_looped_chain])
    results = by_task(s.run(pool=ProcessWorkerPool()))
    for task, links in zip(long_ones, (500, 5000), strict=True):
        chain = _causes(results[task].excinfo.val)
        assert [exc.args[0] for exc in chain] == list(range(links - 1, links - 101, -1))
        assert chain[-1].__notes__ == [
            f"[pexen: the chain of this exception went on with {links - 100} more "
            f"exceptions (its __cause__ and __context__); they were cut, as at most "
            f"100 travel back from a worker]"
        ]
        assert all(not hasattr(exc, "__notes__") for exc in chain[:-1])
    looped = results[raise_looped_chain].excinfo.val
    assert looped.args == ("a",)
    assert looped.__context__.args == ("b",)
    assert looped.__context__.__context__ is looped  # the loop, kept
    text = "".join(traceback.format_exception(*results[raise_looped_chain].excinfo))
    assert "KeyError: 'b'" in text


def test_system_exit_keeps_its_code(method):
    def exits():
        sys.exit(5)

    (res,) = Sched([exits]).run(pool=ProcessWorkerPool(mp_context=method))
    assert res.excinfo.type is SystemExit
    assert res.excinfo.val.code == 5


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
            assert len(held_by_one_worker(pool)) == 2
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


