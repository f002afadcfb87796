"""The scheduler's exceptions: who raises each one, and when."""

from __future__ import annotations

import pickle
from concurrent.futures import CancelledError
from typing import Any

from pexen._errors import PexenError, PexenWarning


class SchedulerError(PexenError, RuntimeError):
    """Raised by ``Sched`` when it is used wrongly.

    For example a second ``run()`` while one is in progress, or a task whose
    signature cannot accept what its metadata gives it.
    """


class DepcheckError(PexenError, ValueError):
    """Raised by ``Sched.run()``/``Sched.check()`` before any task starts.

    The requirement graph is unsound: a required tag that no task provides, or
    a cycle of requirements. ``missing`` maps each unprovided tag to the tasks
    that need it; ``cycle`` lists the tasks of a cycle, first one repeated.
    """

    def __init__(self, message: str, *, missing=None, cycle=None) -> None:
        super().__init__(message)
        self.missing = dict(missing or {})
        self.cycle = list(cycle or ())

    def __reduce__(self):
        return _rebuild, (type(self), self.args, self.__dict__)


class MutexError(PexenError, ValueError):
    """Raised before a run when a task has one resource in ``claims`` and ``uses``."""


class PoolError(PexenError, RuntimeError):
    """Raised by a worker pool that cannot do what it was asked.

    For example a pool asked to serve two runs at once, or a pool whose engine
    is not installed.
    """


class TransportError(PoolError, pickle.PicklingError):
    """Carried in a task's ``TaskRes`` when it could not travel to or from a worker.

    Raised by the pools that leave this process (process, executor, Dask and
    MPI pools) for the task concerned alone: the message says what could not
    be pickled (or unpickled), why, and where in the value the culprit sits.
    ``what`` and ``reason`` hold the two halves.
    """

    def __init__(self, message: str, *, what: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.what = what
        self.reason = reason

    def __reduce__(self):
        return _rebuild_transport_error, (self.args, self.what, self.reason)


def _rebuild_transport_error(args, what, reason):
    return TransportError(*args, what=what, reason=reason)


class RemoteTaskError(Exception):
    """Stands in, in a ``TaskRes``, for an exception that could not come back.

    Made by the pools that leave this process when a task's exception cannot
    be pickled in the worker or unpickled here; it is not a ``PexenError``,
    since it takes the place of the task's own exception.

    ``type_name`` is the original exception's qualified type name, ``message``
    its ``str()``, ``remote_traceback`` its traceback (with its chain) as
    formatted in the worker and ``reason`` why the original could not come
    back. The stand-in's own ``__traceback__`` still shows the worker's frames.
    """

    def __init__(
        self, type_name: str, message: str, remote_traceback: str, reason: str = ""
    ) -> None:
        super().__init__(type_name, message, remote_traceback, reason)
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback
        self.reason = reason

    def __str__(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return (
            f"{self.type_name}: {self.message} [the original exception could not "
            f"be brought back from the worker{why}; make it picklable to get it "
            f"instead of this stand-in]"
        )


class WorkerCrashError(PexenError, RuntimeError):
    """Carried in a task's ``TaskRes`` when the worker running it died.

    The task's locks stay held and its dependents are skipped, as for any
    uncontrolled failure.
    """


class TaskTimeoutError(PexenError, TimeoutError):
    """Carried in a task's ``TaskRes`` when it ran longer than its ``timeout``.

    For an executable run by a ``FileTask``, ``cmd`` is its command and
    ``output``/``stderr`` what it wrote before it was killed.
    """

    cmd: Any = None
    output: Any = None
    stderr: Any = None


class TaskCancelledError(PexenError, CancelledError):
    """Carried in a task's ``TaskRes`` when ``Sched.cancel()`` stopped it running.

    Only where the pool can stop a running task: a process pool kills its
    worker (and starts another), a thread pool abandons its thread. It is a
    ``concurrent.futures.CancelledError`` too. The task's locks stay held and
    its dependents are skipped, as for any uncontrolled failure.
    """


class TaskFailError(Exception):
    """Raise it in a task to fail it in a controlled way.

    With ``deps_ok`` (the default) the task's provides count as met, so its
    dependents still run; with ``locks_ok`` (the default) its locks are
    released. Subclass it to give such failures a name of your own.
    """

    def __init__(self, *args: object, deps_ok: bool = True, locks_ok: bool = True):
        super().__init__(*args)
        self.deps_ok = deps_ok
        self.locks_ok = locks_ok

    def __reduce__(self):
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(cls, args, state):
    """Recreate an exception whose ``__init__`` takes keyword-only options."""
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc


class UnrunTasksWarning(PexenWarning):
    """Issued at the end of a run that left tasks unrun; ``Sched.skipped`` says why."""


class UnusedTagWarning(PexenWarning):
    """Issued by the graph check for a tag some task provides but none requires."""


class PoolWarning(PexenWarning):
    """Issued by a pool that goes on short of what was asked for.

    ``ThreadWorkerPool`` issues it when the system refuses to start all its
    threads (the run goes on with those there are), and when a run ends
    while a task that overran its timeout still runs in its thread, which
    the pool then abandons.
    """
