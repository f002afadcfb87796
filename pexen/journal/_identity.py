"""A task's identity across runs: what a journal files its results under.

A run's tasks are told apart by object identity (``task_key``); across runs
the objects are new, so a journal needs a name that stays: ``SchedMeta.name``
when given, else the call path a factory recorded, else the module and
qualified name of the callable.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from types import MethodType
from typing import Any

from pexen.journal._errors import JournalError
from pexen.sched._naming import CALLPATH_ATTR, task_name
from pexen.sched._result import task_key
from pexen.sched.meta import META_ATTR, SchedMeta


def task_identity(task: Any) -> str:
    """The name *task* is known by across runs (see the module docstring)."""
    meta = getattr(task, META_ATTR, None)
    if isinstance(meta, SchedMeta) and meta.name is not None:
        return meta.name
    callpath = getattr(task, CALLPATH_ATTR, None)
    if callpath:
        return "/".join(callpath)
    return _code_name(task)


def _code_name(task: Any) -> str:
    """``module:qualname`` of the code *task* runs."""
    if isinstance(task, functools.partial):
        return f"partial({_code_name(task.func)})"
    if type(task) is MethodType:
        task = task.__func__
    qualname = getattr(task, "__qualname__", None)
    if not isinstance(qualname, str):  # a callable object: its class
        task = type(task)
        qualname = task.__qualname__
    return f"{getattr(task, '__module__', None) or '?'}:{qualname}"


class DuplicateIdentityError(JournalError):
    """Two tasks of one run share an identity: ``identity``, ``tasks`` (both)."""

    def __init__(self, identity: str, tasks: tuple[Any, Any]) -> None:
        first, second = (task_name(task) for task in tasks)
        if first == second:
            first, second = repr(tasks[0]), repr(tasks[1])
        super().__init__(
            f"two tasks have the identity {identity!r}: {first!r} and "
            f"{second!r}; a journal tells tasks apart across runs by it, so give "
            "one of them a name of its own: assign_val(task, name=...) or "
            "@func_meta(name=...)"
        )
        self.identity = identity
        self.tasks = tasks


def identities(tasks: Iterable[Any]) -> dict[str, Any]:
    """Map the identity of each of *tasks* to the task; two tasks with one
    identity raise ``DuplicateIdentityError`` naming both."""
    found: dict[str, Any] = {}
    for task in tasks:
        identity = task_identity(task)
        other = found.setdefault(identity, task)
        if other is not task and task_key(other) != task_key(task):
            raise DuplicateIdentityError(identity, (other, task))
    return found
