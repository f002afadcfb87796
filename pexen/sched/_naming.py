"""Human-readable task names for messages and reports."""

from __future__ import annotations

import functools

CALLPATH_ATTR = "pexen_callpath"


def task_name(task: object) -> str:
    """Name *task* the way a user would recognise it.

    A factory-made task is named by its call path (``pkg/mod/test_x``); a
    function by its qualified name, a lambda with its file and line, a
    ``functools.partial`` by the function it wraps, any other callable by its
    ``repr``.
    """
    callpath = getattr(task, CALLPATH_ATTR, None)
    if callpath:
        return "/".join(callpath)
    if isinstance(task, functools.partial):
        return f"partial({task_name(task.func)})"
    qualname = getattr(task, "__qualname__", None)
    if isinstance(qualname, str):
        if qualname.endswith("<lambda>"):
            code = getattr(task, "__code__", None)
            if code is not None:
                return f"{qualname} ({code.co_filename}:{code.co_firstlineno})"
        return qualname
    return repr(task)
