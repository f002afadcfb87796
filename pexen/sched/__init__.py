"""The scheduler: ``Sched``, its results and errors, and the pool and meta modules."""

from __future__ import annotations

from pexen.sched import meta, pool
from pexen.sched._errors import (
    DepcheckError,
    MutexError,
    PoolError,
    PoolWarning,
    RemoteTaskError,
    SchedulerError,
    TaskCancelledError,
    TaskFailError,
    TaskTimeoutError,
    TransportError,
    UnrunTasksWarning,
    UnusedTagWarning,
    WorkerCrashError,
)
from pexen.sched._events import Event, Status
from pexen.sched._failwrap import task_fail_wrap
from pexen.sched._result import ExceptionInfo, TaskRes
from pexen.sched._sched import Sched

__all__ = [
    "DepcheckError",
    "Event",
    "ExceptionInfo",
    "MutexError",
    "PoolError",
    "PoolWarning",
    "RemoteTaskError",
    "Sched",
    "SchedulerError",
    "Status",
    "TaskCancelledError",
    "TaskFailError",
    "TaskRes",
    "TaskTimeoutError",
    "TransportError",
    "UnrunTasksWarning",
    "UnusedTagWarning",
    "WorkerCrashError",
    "meta",
    "pool",
    "task_fail_wrap",
]

# Errors and records print and pickle under the name they are imported by.
for _kind in (DepcheckError, Event, MutexError, PoolError, PoolWarning,
              RemoteTaskError, SchedulerError, Status, TaskCancelledError,
              TaskFailError, TaskTimeoutError, TransportError, UnrunTasksWarning,
              UnusedTagWarning, WorkerCrashError):
    _kind.__module__ = __name__
del _kind
