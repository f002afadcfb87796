"""How to call a task: decided once per task from its signature (SPEC §3).

``shared`` goes first, positionally, exactly when the first parameter is
positional (or ``*args``) and its name is not one of the task's ``kwargs``;
the ``kwargs`` always go by keyword.
"""

from __future__ import annotations

import inspect
import sys
import threading
import types
from collections.abc import Mapping
from typing import Any

from pexen.sched._errors import SchedulerError
from pexen.sched._naming import task_name
from pexen.sched._result import ExceptionInfo

_POSITIONAL = (
    inspect.Parameter.POSITIONAL_ONLY,
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
    inspect.Parameter.VAR_POSITIONAL,
)

# Plain functions sharing a code object (lambdas made in a loop, closures) have
# the same signature when their defaults line up, so the decision is cached.
_plain_cache: dict[tuple, bool] = {}
_CACHE_LIMIT = 4096


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


def passes_shared(task: Any, kwargs: Mapping[str, Any]) -> bool:
    """Return whether *task* takes ``shared`` first; raise if it cannot be called."""
    if type(task) is types.FunctionType and not (
        "__wrapped__" in task.__dict__ or "__signature__" in task.__dict__
    ):
        key = (
            task.__code__,
            len(task.__defaults__ or ()),
            tuple(task.__kwdefaults__ or ()),
            tuple(kwargs),
        )
        decision = _plain_cache.get(key)
        if decision is None:
            if len(_plain_cache) >= _CACHE_LIMIT:
                _plain_cache.clear()
            decision = _plain_cache[key] = _decide(task, kwargs)
        return decision
    return _decide(task, kwargs)


def execute(job: tuple) -> tuple:
    """Run one job ``(key, task, pass_shared, kwargs, shared, timeout)``.

    Return the outcome ``(key, shared, ret, excinfo)``. Everything the task
    raises is caught, except a KeyboardInterrupt in the main thread, which
    must stop the run.
    """
    key, task, pass_shared, kwargs, shared, _timeout = job
    try:
        ret = task(shared, **kwargs) if pass_shared else task(**kwargs)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt) and (
            threading.current_thread() is threading.main_thread()
        ):
            raise
        return key, shared, None, ExceptionInfo(*sys.exc_info())
    return key, shared, ret, None
