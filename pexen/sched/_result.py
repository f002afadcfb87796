"""What a run yields: ``TaskRes`` and the ``ExceptionInfo`` inside it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from types import MethodType, TracebackType
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
    shared: dict = {}
    ret: Any = None
    excinfo: ExceptionInfo | None = None


def task_key(task: Any) -> Any:
    """What tells tasks apart: their identity, or a bound method's object and
    function (``obj.meth`` makes a new, equal method object each time)."""
    if type(task) is MethodType:
        return (id(task.__self__), id(task.__func__))
    return id(task)


class TaskMap(Mapping):
    """A read-only mapping keyed by task identity, as ``Sched.skipped``.

    Tasks are told apart by identity (``task_key``), as ``Sched`` does when
    they are added, so a task need not be hashable (a callable dataclass
    instance is not) and two equal but distinct tasks keep an entry each;
    ``obj.meth`` finds the entry of the ``obj.meth`` added.
    """

    __slots__ = ("_items",)

    def __init__(self, pairs: Iterable[tuple[Any, Any]] = ()) -> None:
        self._items = {task_key(task): (task, value) for task, value in pairs}

    def __getitem__(self, task: Any) -> Any:
        try:
            return self._items[task_key(task)][1]
        except KeyError:
            raise KeyError(task) from None

    def __contains__(self, task: object) -> bool:
        return task_key(task) in self._items

    def __iter__(self) -> Iterator[Any]:
        return (task for task, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        pairs = self._items.values()
        return "{" + ", ".join(f"{task!r}: {value!r}" for task, value in pairs) + "}"
