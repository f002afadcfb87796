"""What a run yields: ``TaskRes`` and the ``ExceptionInfo`` inside it."""

from __future__ import annotations

from types import TracebackType
from typing import Any, NamedTuple


class ExceptionInfo(NamedTuple):
    """What ``sys.exc_info()`` held in the worker when the task raised.

    ``tb`` is a real traceback object for every pool, so
    ``traceback.print_exception(*res.excinfo)`` shows the worker's frames.
    """

    type: type[BaseException]
    val: BaseException
    tb: TracebackType | None


class TaskRes(NamedTuple):
    """The result of one finished task.

    ``task`` is the very object that was added to the scheduler, ``shared``
    the task's shared dict after it ran, ``ret`` what it returned and
    ``excinfo`` an :class:`ExceptionInfo` if it raised, else None.
    """

    task: Any
    shared: dict = {}  # noqa: RUF012 - SPEC: the default is an (unused) empty dict
    ret: Any = None
    excinfo: ExceptionInfo | None = None
