"""How to call a task: decided once per task from its signature (SPEC §3).

``shared`` goes first, positionally, exactly when the first parameter is
positional (or ``*args``) and its name is not one of the task's ``kwargs``;
the ``kwargs`` always go by keyword.
"""

from __future__ import annotations

import functools
import inspect
import sys
import threading
import time
import types
from collections.abc import Mapping
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

# The decision is cached for plain functions and for partials of them: it
# depends only on the shape of the signature, which a function's code object,
# the number of its defaults and the names of its keyword defaults fix (lambdas
# made in a loop, closures and the partials factories make for each task share
# those), plus, for a partial, how many arguments and which keywords it binds.
# The values bound or defaulted never change it. A failing signature is never
# cached: each task gets its own message.
_decision_cache: dict[tuple, bool] = {}
_CACHE_LIMIT = 4096
# attributes through which inspect.signature learns more than the code tells
_SIGNATURE_ATTRS = frozenset(
    {"__wrapped__", "__signature__", "_partialmethod", "__partialmethod__"}
)
_PLACEHOLDER = getattr(functools, "Placeholder", None)  # Python 3.14+


def _decide(task: Any, kwargs: Mapping[str, Any]) -> bool:
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


def _cache_key(task: Any, kwargs: Mapping[str, Any]) -> tuple | None:
    """The key of *task*'s decision in the cache, or None to decide afresh."""
    if type(task) is functools.partial:
        shape = _shape(task.func)
        if shape is None or not _SIGNATURE_ATTRS.isdisjoint(task.__dict__):
            return None
        if _PLACEHOLDER is not None and any(arg is _PLACEHOLDER for arg in task.args):
            return None
        bound = (len(task.args), tuple(task.keywords))
    else:
        shape, bound = _shape(task), None
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


_new_outcome = tuple.__new__  # Outcome(...) without its Python-level __new__
_now = time.monotonic


def execute(job: Job) -> Outcome:
    """Run one job in this thread and return its outcome, timed.

    Everything the task raises is caught, except a KeyboardInterrupt in the
    main thread, which must stop the run.
    """
    key, task, pass_shared, kwargs, shared, _timeout = job
    started = _now()
    try:
        ret = task(shared, **kwargs) if pass_shared else task(**kwargs)
    except BaseException as exc:
        duration = _now() - started
        if isinstance(exc, KeyboardInterrupt) and (
            threading.current_thread() is threading.main_thread()
        ):
            raise
        excinfo = ExceptionInfo(*sys.exc_info())
        return _new_outcome(Outcome, (key, shared, None, excinfo, started, duration))
    return _new_outcome(Outcome, (key, shared, ret, None, started, _now() - started))
