"""``BaseFactory`` and call paths: where in a structure each task came from.

A call path is a tuple of strings (``("pkg", "mod", "test_x")``, or the
directory parts of a script plus its file name). Factories record it on each
task as the ``pexen_callpath`` attribute; task names in messages and the
command line's ``-k`` selection read it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from pexen._errors import PexenWarning
from pexen.factory._errors import CollectionError
from pexen.sched._naming import CALLPATH_ATTR

T = TypeVar("T")


def get_callpath(task: object) -> tuple[str, ...]:
    """Return the call path a factory recorded on *task*; ``()`` if it has none.

    An empty tuple (rather than None) lets callers join or compare call paths
    of any task without a special case; no factory-made task has an empty one.
    """
    path = getattr(task, CALLPATH_ATTR, None)
    return tuple(path) if path else ()


def _check_part(part: object) -> str:
    """Reject a call-path part that could not be told apart when joined with '/'."""
    if not isinstance(part, str) or not part or "/" in part:
        raise ValueError(
            f"call path part {part!r}: expected a non-empty string without '/' "
            "(call paths are shown and selected joined with '/')"
        )
    return part


class BaseFactory:
    """Base class of factories: configured in ``__init__``, called to yield tasks.

    A subclass implements :meth:`collect`. Calling the factory runs ``collect``,
    then returns an iterator over the tasks sorted by call path (each task
    once). The factory is reusable: every call collects afresh. Problems that
    should not stop the collection go to ``errors`` (a list of
    :class:`CollectionError`, reset at each call) via :meth:`record_error`;
    if any were recorded, the call also issues one ``PexenWarning``.

    ``callpath`` is the prefix put in front of every task's own name; a
    factory grows it while it descends (:meth:`callpath_push`,
    :meth:`callpath_pop`) and hands it to sub-factories
    (:meth:`callpath_transfer`, :meth:`collect_from`).
    """

    def __init__(self) -> None:
        self.callpath: list[str] = []
        self.errors: list[CollectionError] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} callpath={tuple(self.callpath)!r}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """Collect tasks from *args*; return them sorted by call path."""
        saved = list(self.callpath)
        self.errors = []
        seen: set[int] = set()
        tasks = []
        try:
            for task in self.collect(*args, **kwargs):
                if id(task) not in seen:
                    seen.add(id(task))
                    tasks.append(task)
        finally:
            # an exception half-way must not leave a pushed level behind
            self.callpath = saved
        tasks.sort(key=get_callpath)
        if self.errors:
            count = len(self.errors)
            warnings.warn(
                f"{type(self).__name__}: {count} "
                f"{'item' if count == 1 else 'items'} could not be collected "
                f"(first: {self.errors[0]}); the factory's .errors list has "
                "each file, exception and traceback",
                PexenWarning,
                stacklevel=2,
            )
        return iter(tasks)

    def collect(self, *args: Any, **kwargs: Any) -> Iterable[Any]:
        """Yield the tasks, in any order; subclasses implement it."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement collect(), the method that "
            "yields its tasks"
        )

    def callpath_push(self, name: str) -> None:
        """Descend one level: *name* joins the call path of the tasks that follow."""
        self.callpath.append(_check_part(name))

    def callpath_pop(self) -> str:
        """Go back up one level; return the name that was pushed last."""
        if not self.callpath:
            raise IndexError("callpath_pop() without a matching callpath_push()")
        return self.callpath.pop()

    def callpath_transfer(self, other: BaseFactory) -> None:
        """Make *other* put its tasks under this factory's current call path."""
        other.callpath = list(self.callpath)

    def callpath_burn(self, task: T, name: str) -> T:
        """Record the current call path plus *name* on *task*; return *task*."""
        path = (*self.callpath, _check_part(name))
        try:
            setattr(task, CALLPATH_ATTR, path)
        except (AttributeError, TypeError):
            raise TypeError(
                f"cannot record a call path on {task!r}: it does not accept "
                "attributes; wrap it in a function or functools.partial first"
            ) from None
        return task

    def collect_from(
        self, sub: BaseFactory, *args: Any, **kwargs: Any
    ) -> Iterator[Any]:
        """Yield sub-factory *sub*'s tasks under our call path; adopt its errors."""
        self.callpath_transfer(sub)
        sub.errors = []
        try:
            yield from sub.collect(*args, **kwargs)
        finally:
            self.errors.extend(sub.errors)

    def record_error(
        self, path: str, exc: BaseException, name: str | None = None
    ) -> CollectionError:
        """Note that *path* could not be collected because of *exc*, and go on."""
        callpath = (*self.callpath, name) if name else tuple(self.callpath)
        error = CollectionError(path, exc, callpath)
        self.errors.append(error)
        return error
