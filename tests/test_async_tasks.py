"""``async def`` tasks run to completion; generator functions are refused (SPEC §9).

Every pool kind runs an ``async def`` task on an event loop of its own in the
worker, whatever shape the task has (function, partial, bound method, object
with an async ``__call__``, a wrapper handing a coroutine on). A generator
function is refused before any task starts: its body would never run.
"""

from __future__ import annotations

import asyncio
import functools
import traceback

import pytest

from pexen import sched
from pexen.sched import SchedulerError, pool
from pexen.sched.meta import assign_val, func_meta
from tests.cli._cli import run_pexen, write_package

PRESET = {"preset": "p"}


def run_alone(make_pool, task):
    """Run *task* alone with the PRESET shared keys; return its ``TaskRes``."""
    s = sched.Sched([task])
    s.add_shared(**PRESET)
    results = list(s.run(pool=make_pool(1, 1)))
    assert [res.task for res in results] == [task]
    return results[0]


# -- async tasks run, on every pool ------------------------------------------


@func_meta(kwargs={"n": 3})
async def async_with_shared(shared, *, n):
    await asyncio.sleep(0)  # a real suspension: the loop has to resume it
    shared["seen"] = n
    return ("async", dict(shared), n)


async def async_no_args():
    await asyncio.sleep(0)
    return "awaited"


async def async_two(a, shared):
    await asyncio.sleep(0)
    return (a, dict(shared))


async def async_fails():
    await asyncio.sleep(0)
    _fail_inside()


def _fail_inside():
    raise ValueError("async boom")


class AsyncCall:
    """An object whose ``__call__`` is async."""

    def __init__(self, name):
        self.name = name

    async def __call__(self, shared):
        await asyncio.sleep(0)
        return ("call", self.name, dict(shared))

    async def method(self):
        await asyncio.sleep(0)
        return ("method", self.name)


def passes_it_on(fn):
    """A plain (not async) decorator that hands the coroutine on, as many do."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


@passes_it_on
async def decorated_async():
    await asyncio.sleep(0)
    return "decorated"


def test_async_task_runs_with_shared_and_kwargs(make_pool):
    res = run_alone(make_pool, async_with_shared)
    assert res.excinfo is None, res.excinfo
    assert res.ret == ("async", {**PRESET, "seen": 3}, 3)
    assert res.shared == {**PRESET, "seen": 3}


def shapes():
    """Each shape of async task, made afresh, with what it returns."""
    return {
        "function": (async_no_args, "awaited"),
        "partial": (functools.partial(async_two, "A"), ("A", PRESET)),
        "callable-object": (AsyncCall("obj"), ("call", "obj", PRESET)),
        "bound-method": (AsyncCall("meth").method, ("method", "meth")),
        "sync-wrapper": (decorated_async, "decorated"),
        "lambda-returning-a-coroutine": (lambda: async_no_args(), "awaited"),
    }


def test_every_shape_of_async_task_runs(make_pool):
    # one run of them all: a process pool starts once, not once per shape
    made = shapes()
    s = sched.Sched([task for task, _ in made.values()])
    s.add_shared(**PRESET)
    by_task = {id(res.task): res for res in s.run(pool=make_pool(1, 1))}
    got = {}
    for shape, (task, _) in made.items():
        res = by_task.pop(id(task))
        assert res.excinfo is None, (shape, res.excinfo)
        got[shape] = res.ret
    assert not by_task  # every result is one of the tasks, each task's once
    assert got == {shape: expected for shape, (_, expected) in made.items()}


def test_async_failure_is_reported_with_its_traceback(make_pool):
    res = run_alone(make_pool, async_fails)
    assert res.excinfo is not None
    assert res.excinfo.type is ValueError
    assert str(res.excinfo.val) == "async boom"
    frames = [frame.name for frame in traceback.extract_tb(res.excinfo.tb)]
    # the task's own frames, in order, with asyncio's machinery left out
    assert frames[-2:] == ["async_fails", "_fail_inside"]
    text = "".join(traceback.format_exception(*res.excinfo))
    assert "base_events.py" not in text and "runners.py" not in text, text


def test_a_failed_async_task_fails_its_dependents(make_pool):
    failing = functools.partial(async_fails)
    assign_val(failing, provides=["x"])
    waiter = functools.partial(async_no_args)
    assign_val(waiter, requires=["x"])
    s = sched.Sched([failing, waiter])
    with pytest.warns(sched.UnrunTasksWarning, match="1 task did not run"):
        results = list(s.run(pool=make_pool(1, 1)))
    assert [res.task for res in results] == [failing]
    assert results[0].excinfo.type is ValueError
    assert s.skipped[waiter].startswith("requires tag 'x', never provided because")


def test_each_async_task_gets_a_fresh_loop_closed_after_it():
    async def loop_of_mine():
        return asyncio.get_running_loop()

    async def leaves_a_task_behind():
        started = asyncio.Event()

        async def forever():
            started.set()
            await asyncio.Event().wait()

        leftover = asyncio.get_running_loop().create_task(forever())
        await started.wait()
        return leftover

    tasks = [loop_of_mine, functools.partial(loop_of_mine), leaves_a_task_behind]
    for kind in (pool.InlineWorkerPool(), pool.ThreadWorkerPool(1, 1)):
        first, second, third = [res.ret for res in sched.Sched(tasks).run(kind)]
        assert first is not second
        assert first.is_closed() and second.is_closed()
        assert third.cancelled()  # what the task left on its loop did not outlive it


def test_inline_pool_inside_a_running_loop_says_what_to_do():
    async def drive():
        s = sched.Sched([async_no_args])
        return list(s.run(pool=pool.InlineWorkerPool()))

    [res] = asyncio.run(drive())
    assert res.excinfo.type is SchedulerError
    assert str(res.excinfo.val) == (
        "task 'async_no_args' returned a coroutine, which pexen runs on an event "
        "loop of its own, but this thread already runs one (an InlineWorkerPool "
        "runs tasks in the thread that drives the run); from async code, use a "
        "ThreadWorkerPool or a ProcessWorkerPool"
    )


def test_thread_pool_inside_a_running_loop_runs_async_tasks():
    async def drive():
        return list(sched.Sched([async_no_args]).run(pool=pool.ThreadWorkerPool()))

    [res] = asyncio.run(drive())
    assert res.excinfo is None and res.ret == "awaited"


# -- generator functions are refused before the run ---------------------------


def gen_task():
    yield 1


async def async_gen_task():
    yield 1


class GenCall:
    def __call__(self):
        yield 1

    def method(self, shared):
        yield shared


GENERATORS = [
    (lambda: gen_task, "gen_task", "generator"),
    (lambda: async_gen_task, "async_gen_task", "async generator"),
    (lambda: functools.partial(gen_task), r"partial\(gen_task\)", "generator"),
    (lambda: GenCall().method, "GenCall.method", "generator"),
    (lambda: GenCall(), "<.*GenCall object at .*>", "generator"),
]


@pytest.mark.parametrize(
    ("make_task", "name", "kind"), GENERATORS,
    ids=["function", "async-generator", "partial", "bound-method",
         "callable-object"],
)
def test_generator_functions_are_refused_before_the_run(make_pool, make_task, name,
                                                        kind):
    started = []

    def first():
        started.append(1)

    s = sched.Sched([first, make_task()])
    message = (rf"^task '{name}' is an? {kind} function: calling it only makes an? "
               rf"{kind}, and its body would never run; make it return a value "
               r"instead, or collect the items into a list \(return ")
    with pytest.raises(SchedulerError, match=message):
        s.check()
    with pytest.raises(SchedulerError, match=message):
        s.run(pool=make_pool(1, 1))
    assert started == []


def consumes_it(fn):
    """A decorator that runs the generator it wraps: a task like any other."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return list(fn(*args, **kwargs))

    return wrapper


def test_a_wrapper_that_consumes_a_generator_is_a_task_like_any_other(make_pool):
    (res,) = sched.Sched([consumes_it(gen_task)]).run(pool=make_pool(1, 1))
    assert (res.ret, res.excinfo) == ([1], None)


@pytest.mark.parametrize("wrapped", [gen_task, async_gen_task],
                         ids=["generator", "async-generator"])
def test_a_wrapper_that_hands_the_generator_on_fails_the_task(make_pool, wrapped):
    # functools.wraps says it is called as gen_task, but its own body runs:
    # it is found out when it returns gen_task's generator, unrun
    task = passes_it_on(wrapped)
    (res,) = sched.Sched([task]).run(pool=make_pool(1, 1))
    assert res.excinfo.type is SchedulerError
    assert f"returned the {'async ' * (wrapped is async_gen_task)}generator of " \
        f"'{wrapped.__name__}', which it wraps: its body never ran" in str(
            res.excinfo.val)


def test_a_task_may_return_a_generator_of_its_own_as_its_value():
    def numbers():
        return gen_task()

    (res,) = sched.Sched([numbers]).run(pool=pool.InlineWorkerPool())
    assert res.excinfo is None and list(res.ret) == [1]


def test_a_refused_generator_is_refused_every_time():
    # a refusal is never cached: the second task of the same code gets its own
    def make(n):
        def numbered():
            yield n

        numbered.__qualname__ = f"numbered{n}"
        return numbered

    for n in range(2):
        with pytest.raises(SchedulerError, match=f"task 'numbered{n}' is a generator"):
            sched.Sched([make(n)]).check()


# -- on the command line -------------------------------------------------------


ASYNC_SUITE = """
    import asyncio

    from pexen.sched.meta import func_meta


    @func_meta
    async def test_fails():
        await asyncio.sleep(0)
        assert False, "the async body ran"


    @func_meta
    async def test_passes():
        await asyncio.sleep(0)
"""

GENERATOR_SUITE = """
    from pexen.sched.meta import func_meta


    @func_meta
    def test_ok():
        pass


    @func_meta
    def test_items():
        yield 1
"""


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_pexen_run_fails_an_async_test_that_fails(tmp_path, kind):
    write_package(tmp_path, "asyncsuite", {"test_async": ASYNC_SUITE})
    done = run_pexen("run", str(tmp_path / "asyncsuite"), "--pool", kind, "-j", "1")
    assert "FAILED  asyncsuite/test_async/test_fails" in done.stdout, done.stdout
    assert "AssertionError: the async body ran" in done.stdout
    assert "PASSED  asyncsuite/test_async/test_passes" in done.stdout
    assert "never awaited" not in done.stderr, done.stderr
    assert done.returncode == 1


def test_pexen_run_refuses_a_generator_test(tmp_path):
    write_package(tmp_path, "gensuite", {"test_gen": GENERATOR_SUITE})
    done = run_pexen("run", str(tmp_path / "gensuite"))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr == (
        "pexen: error: task 'gensuite/test_gen/test_items' is a generator function: "
        "calling it only makes a generator, and its body would never run; make it "
        "return a value instead, or collect the items into a list (return "
        "list(...))\n"
    )
    assert "PASSED" not in done.stdout  # refused before any task started
