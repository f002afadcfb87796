"""Factory errors: a malformed script header, a file that could not be collected."""

from __future__ import annotations

import traceback as _traceback
from typing import Any

from pexen._errors import PexenError


class HeaderError(PexenError, ValueError):
    """Raised by the header parser for a malformed ``# pexen:`` line of a script.

    ``FilesystemFactory`` does not let it escape: it records it (wrapped in a
    :class:`CollectionError`) and skips the file, so one bad script cannot
    hide the others. ``path`` and ``lineno`` say where, ``problem`` what.
    """

    def __init__(self, path: str, lineno: int, problem: str) -> None:
        super().__init__(f"{path}:{lineno}: malformed pexen header: {problem}")
        self.path = path
        self.lineno = lineno
        self.problem = problem

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.path, self.lineno, self.problem)


class CollectionError(PexenError):
    """A file or module a factory could not turn into tasks.

    Factories do not raise it: they append it to their ``errors`` list and go
    on collecting (``factory.errors`` after a call). ``path`` is the file (or
    module name when no file is known; for a module-level object that could
    not be made a task, its dotted name), ``callpath`` where its tasks would
    have gone, ``exc`` the exception it raised and ``traceback`` that
    exception formatted as Python prints it.
    """

    def __init__(
        self, path: str, exc: BaseException, callpath: tuple[str, ...] = ()
    ) -> None:
        super().__init__(f"cannot collect {path}: {type(exc).__name__}: {exc}")
        self.path = path
        self.exc = exc
        self.callpath = tuple(callpath)
        self.traceback = "".join(
            _traceback.format_exception(type(exc), exc, exc.__traceback__)
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(
    cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]
) -> BaseException:
    """Recreate an error whose ``__init__`` takes other arguments than its ``args``."""
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc
