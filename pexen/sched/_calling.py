"""How to call a task: decided once per task from its signature (SPEC §3).

``shared`` goes first, positionally, exactly when the first parameter is
positional (or ``*args``) and its name is not one of the task's ``kwargs``;
the ``kwargs`` always go by keyword.

A generator function (or async generator function) is refused before the run:
calling it only makes a generator, its body would never run. A call that
returns a coroutine (an ``async def`` task, a partial or bound method of one,
an object whose ``__call__`` is async, or a wrapper handing one on) has it run
to completion on an event loop of its own in the worker (SPEC §9).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
import threading
import time
import types
from collections.abc import Iterator, Mapping
from typing import Any

from pexen.sched._errors import SchedulerError
from pexen.sched._naming import task_name
from pexen.sched._pools.base import Job, Outcome
from pexen.sched._result import ExceptionInfo

_POSITIONAL = (
    inspect.Parameter.POSITIONAL_ONLY,
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
    inspect.Parameter.VAR_POSITIONAL,
)

# The decision is cached for plain functions, for partials and bound methods of
# them and for instances of a class with a plain ``__call__``: it depends only
# on the shape of the signature, which a function's code object, the number of
# its defaults and the names of its keyword defaults fix (lambdas made in a
# loop, closures, the partials factories make for each task and the instances
# of one class share those), plus, for a partial, how many arguments and which
# keywords it binds, and for a method or object that its first parameter is
# bound. The values bound or defaulted never change it; the code also says
# whether it is a generator function. A refused task is never cached: each
# task gets its own message.
_decision_cache: dict[tuple, bool] = {}
_CACHE_LIMIT = 4096
# attributes through which inspect.signature learns more than the code tells
_SIGNATURE_ATTRS = frozenset(
    {"__wrapped__", "__signature__", "_partialmethod", "__partialmethod__"}
)
# ... and, on a callable object, those that make inspect.signature look at the
# object rather than its class (with a __code__, it takes it for a function)
_OBJECT_ATTRS = (*sorted(_SIGNATURE_ATTRS), "__code__")
_BOUND = "bound"  # a method's or a callable object's first parameter is taken
_PLACEHOLDER = getattr(functools, "Placeholder", None)  # Python 3.14+
_MAX_LAYERS = 100  # wrappers looked through, so that a __wrapped__ loop ends


def _layers(task: Any) -> Iterator[Any]:
    """Yield *task* and what it calls in turn, down to a function.

    Looks through partials, bound methods, the ``__wrapped__`` of a callable
    object (one that says it is called as what it wraps, unless it has a
    ``__signature__`` of its own) and the class's ``__call__`` of a callable
    object. A function is what runs, so the walk ends there, even at a
    ``functools.wraps`` wrapper: its own body runs, whatever it wraps.
    """
    layer = task
    for _ in range(_MAX_LAYERS):
        yield layer
        if isinstance(layer, functools.partial):
            layer = layer.func
        elif isinstance(layer, types.MethodType):
            layer = layer.__func__
        elif isinstance(layer, (types.FunctionType, type)):
            return
        elif not hasattr(layer, "__signature__") and hasattr(layer, "__wrapped__"):
            layer = layer.__wrapped__
        else:
            # what a call runs: the class's __call__ (not a test of callability)
            call = getattr(type(layer), "__call__", None)  # noqa: B004
            if not isinstance(call, types.FunctionType):
                return
            layer = call


def _refuse_generators(task: Any) -> None:
    """Raise if calling *task* would only make a generator, not run its body."""
    for layer in _layers(task):
        if inspect.isgeneratorfunction(layer):
            kind, fix = "generator", "return list(...)"
        elif inspect.isasyncgenfunction(layer):
            kind, fix = "async generator", "return [item async for item in ...]"
        else:
            continue
        an = "an" if kind.startswith("async") else "a"
        raise SchedulerError(
            f"task {task_name(task)!r} is {an} {kind} function: calling it only "
            f"makes {an} {kind}, and its body would never run; make it return a "
            f"value instead, or collect the items into a list ({fix})"
        )


def is_coroutine_task(task: Any) -> bool:
    """Whether calling *task* makes a coroutine (it is ``async def`` at heart).

    Looks through partials, bound methods, ``__wrapped__`` and an object's
    ``__call__`` as the calling convention does; a plain function that
    happens to return a coroutine (a lambda around one) is not seen: the
    pools find that out from what the call returns.
    """
    return any(inspect.iscoroutinefunction(layer) for layer in _layers(task))


def refuse_handed_on_generator(task: Any, generator: Any) -> None:
    """Raise if *task* handed on the generator of a generator function it wraps.

    A decorator made with ``functools.wraps`` runs its own body, so a task it
    wraps is not refused before the run (the decorator may well consume the
    generator). When it hands the generator on instead, the body of the
    function it wraps never ran: that is found here, by the generator's code.
    A task returning some other generator returns it as its value.
    """
    code = getattr(generator, "gi_code", None) or getattr(generator, "ag_code", None)
    layer = task
    for _ in range(_MAX_LAYERS):
        wrapped = getattr(layer, "__wrapped__", None)
        if wrapped is None:
            return
        if getattr(wrapped, "__code__", None) is code:
            if type(generator) is types.GeneratorType:
                generator.close()  # never started: nothing of it runs
                kind = "generator"
            else:
                kind = "async generator"
            raise SchedulerError(
                f"task {task_name(task)!r} returned the {kind} of "
                f"{task_name(wrapped)!r}, which it wraps: its body never ran; make "
                f"{task_name(wrapped)!r} return a value instead, or have the "
                f"wrapper collect the items into a list"
            )
        layer = wrapped


def _decide(task: Any, kwargs: Mapping[str, Any]) -> bool:
    _refuse_generators(task)
    try:
        sig = inspect.signature(task)
    except (TypeError, ValueError):
        return False  # no introspectable signature (some builtins): kwargs only
    params = list(sig.parameters.values())
    pass_shared = bool(params) and params[0].kind in _POSITIONAL and (
        params[0].name not in kwargs
    )
    try:
        sig.bind(*((None,) if pass_shared else ()), **kwargs)
    except TypeError as exc:
        given = ", ".join(["shared"] * pass_shared + [f"{key}=" for key in kwargs])
        raise SchedulerError(
            f"task {task_name(task)!r} cannot be called with what its metadata "
            f"gives it ({given or 'no arguments'}): {exc}; its signature is {sig}"
        ) from None
    return pass_shared


def _shape(fn: Any) -> tuple | None:
    """What fixes the signature of a plain function; None for anything else."""
    if type(fn) is not types.FunctionType or not _SIGNATURE_ATTRS.isdisjoint(
        fn.__dict__
    ):
        return None
    return (fn.__code__, len(fn.__defaults__ or ()), tuple(fn.__kwdefaults__ or ()))


def _call_shape(obj: Any) -> tuple | None:
    """What fixes the signature of a callable object, when its class alone does.

    That is the shape of the class's ``__call__``, as long as nothing on the
    object itself (an instance attribute, a class attribute or a
    ``__getattr__`` answering for it) gives inspect something else to go by.
    """
    call = getattr(type(obj), "__call__", None)  # noqa: B004 - as in _layers
    if type(call) is not types.FunctionType or isinstance(obj, type):
        return None
    try:
        for name in _OBJECT_ATTRS:
            if hasattr(obj, name):
                return None
    except Exception:  # a __getattr__ that fails: let inspect.signature judge
        return None
    return _shape(call)


def _cache_key(task: Any, kwargs: Mapping[str, Any]) -> tuple | None:
    """The key of *task*'s decision in the cache, or None to decide afresh."""
    kind = type(task)
    bound: Any
    if kind is types.FunctionType:
        shape, bound = _shape(task), None
    elif kind is functools.partial:
        shape = _shape(task.func)
        if shape is None or not _SIGNATURE_ATTRS.isdisjoint(task.__dict__):
            return None
        if _PLACEHOLDER is not None and any(arg is _PLACEHOLDER for arg in task.args):
            return None
        bound = (len(task.args), tuple(task.keywords))
    elif kind is types.MethodType:
        shape, bound = _shape(task.__func__), _BOUND
    else:
        shape, bound = _call_shape(task), _BOUND
    if shape is None:
        return None
    return (*shape, bound, tuple(kwargs))


def passes_shared(task: Any, kwargs: Mapping[str, Any]) -> bool:
    """Return whether *task* takes ``shared`` first; raise if it cannot be called."""
    key = _cache_key(task, kwargs)
    if key is None:
        return _decide(task, kwargs)
    decision = _decision_cache.get(key)
    if decision is None:
        if len(_decision_cache) >= _CACHE_LIMIT:
            _decision_cache.clear()
        decision = _decision_cache[key] = _decide(task, kwargs)
    return decision


def run_coroutine(task: Any, coro: types.CoroutineType) -> Any:
    """Run *coro*, which calling *task* returned, to completion; return its value.

    ``asyncio.run`` gives each task a fresh event loop (``asyncio.Runner``,
    which could keep one loop per worker, needs Python 3.11): when the task
    ends, the tasks it left on the loop are cancelled, its async generators
    finalised and the loop closed, so nothing it started there outlives its
    result or meets the next task. A traceback starts at the task's own frame,
    without asyncio's frames in between, as for a task that is not async.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # none in this thread: the usual case
        pass
    else:
        coro.close()
        raise SchedulerError(
            f"task {task_name(task)!r} returned a coroutine, which pexen runs on "
            "an event loop of its own, but this thread already runs one (an "
            "InlineWorkerPool runs tasks in the thread that drives the run); "
            "from async code, use a ThreadWorkerPool or a ProcessWorkerPool"
        )
    try:
        return asyncio.run(coro)
    except BaseException as exc:
        tb = coroutine_traceback(exc, coro)
        if tb is None:  # raised before the task's body ran: keep all of it
            raise
        # the same exception, not a new one: nothing to chain it to
        raise exc.with_traceback(tb)  # noqa: B904


def coroutine_traceback(
    exc: BaseException, coro: types.CoroutineType
) -> types.TracebackType | None:
    """*exc*'s traceback from *coro*'s own frame on, without the event loop's
    frames and ours above it; None if that frame is not in it."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code is not coro.cr_code:
        tb = tb.tb_next
    return tb


_new_outcome = tuple.__new__  # Outcome(...) without its Python-level __new__
_now = time.monotonic


def execute(job: Job, worker: str | None = None) -> Outcome:
    """Run one job in this thread and return its outcome, timed, as run by
    *worker* (a name, where the pool tells).

    A coroutine the task returns is run to completion first. Everything the
    task raises is caught, except a KeyboardInterrupt in the main thread,
    which must stop the run.
    """
    key, task, pass_shared, kwargs, shared, _timeout = job
    started = _now()
    try:
        ret = task(shared, **kwargs) if pass_shared else task(**kwargs)
        kind = type(ret)
        if kind is types.CoroutineType:
            ret = run_coroutine(task, ret)
        elif kind is types.GeneratorType or kind is types.AsyncGeneratorType:
            refuse_handed_on_generator(task, ret)
    except BaseException as exc:
        duration = _now() - started
        if isinstance(exc, KeyboardInterrupt) and (
            threading.current_thread() is threading.main_thread()
        ):
            raise
        excinfo = ExceptionInfo(*sys.exc_info())
        return _new_outcome(
            Outcome, (key, shared, None, excinfo, started, duration, worker)
        )
    return _new_outcome(
        Outcome, (key, shared, ret, None, started, _now() - started, worker)
    )
