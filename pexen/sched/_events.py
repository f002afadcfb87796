"""What a live run tells: ``Event`` (to observers) and ``Status`` (on demand).

An ``Event`` is a named tuple, built with ``tuple.__new__`` by the scheduler
loop only when an observer hears its kind: a run nobody observes builds none.
Its ``name`` is worked out when read, as naming a task costs more than the
event itself. ``Status`` is a named tuple too, so that asking for one after
every result costs little.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from pexen.sched._naming import task_name
from pexen.sched._result import TaskRes

# The kinds of events, in the order a run meets them.
RUN_STARTED = "run-started"
DISPATCHED = "dispatched"
STARTED = "started"
FINISHED = "finished"
RETRYING = "retrying"
SKIPPED = "skipped"
PAUSED = "paused"
RESUMED = "resumed"
ABORTING = "aborting"
RESIZED = "resized"
RUN_ENDED = "run-ended"
KINDS = (RUN_STARTED, DISPATCHED, STARTED, FINISHED, RETRYING, SKIPPED, PAUSED,
         RESUMED, ABORTING, RESIZED, RUN_ENDED)

Observer = Callable[["Event"], Any]
NO_ENTRIES: Mapping[Any, Any] = MappingProxyType({})  # an empty, read-only mapping


class Event(NamedTuple):
    """One change of a run, as ``Sched.observe()`` callbacks receive it.

    ``kind`` is one of ``"run-started"``, ``"dispatched"``, ``"started"``,
    ``"finished"``, ``"retrying"`` (an attempt failed and the task runs
    again: its ``res`` and, in ``reason``, which attempt and when the next),
    ``"skipped"``, ``"paused"``, ``"resumed"``, ``"aborting"``,
    ``"resized"``, ``"run-ended"``. ``time`` is a
    ``time.monotonic()`` and ``wall`` the ``time.time()`` of the change (for
    ``"started"``: when the pool says the task started). ``task`` (and its
    display ``name``) and ``worker`` (the thread or process that runs it,
    where the pool tells) are None for events of the whole run. ``res`` is
    the ``TaskRes`` of ``"finished"``, ``reason`` the words of
    ``"skipped"`` and ``"aborting"``. Beyond those: ``workers`` is the
    pool's worker count on ``"run-started"`` and ``"resized"``,
    ``status`` the ``Status`` on ``"run-started"`` (tasks a resumed run
    carried over count as done) and the final one on ``"run-ended"``, and
    ``duration`` the seconds a ``"finished"`` task ran, as its pool measured
    them (None where the pool cannot tell).
    """

    kind: str
    time: float
    wall: float
    task: Any = None
    worker: str | None = None
    res: TaskRes | None = None
    reason: str | None = None
    workers: int | None = None
    status: Status | None = None
    duration: float | None = None

    @property
    def name(self) -> str | None:
        """The task's display name (None for events of the whole run)."""
        return None if self.task is None else task_name(self.task)

    def __repr__(self) -> str:
        parts = [f"kind={self.kind!r}", f"time={self.time!r}"]
        if self.task is not None:
            parts.append(f"name={self.name!r}")
        for field in ("worker", "res", "reason", "workers", "status", "duration"):
            value = getattr(self, field)
            if value is not None:
                parts.append(f"{field}={value!r}")
        return f"Event({', '.join(parts)})"


class Status(NamedTuple):
    """A snapshot of a run, from ``Sched.status()``: a frozen record.

    Every task of the run is in exactly one count: ``done`` (finished and
    passed), ``failed`` (finished with an exception), ``running`` (started in
    the pool), ``queued`` (handed to the pool, not started), ``ready`` (free
    to go, held back by the pool's capacity, a pause or your loop),
    ``waiting`` (for tags or locks) and ``skipped`` (will not run); they add
    up to ``total``. ``running_tasks`` holds ``(task, started)`` pairs
    (``time.monotonic()``), ``locks`` maps each locked resource to the tasks
    holding it, and ``blocked`` each waiting task to the tags and resource
    it waits for (``"retry"`` for a task waiting to be retried; these two
    are worked out when first read, as they may be long). ``capacity`` maps
    each counted resource to ``(in use, capacity)``, the pool's
    ``"workers"`` among them when a task needs several. ``paused`` and
    ``aborting`` say what the run was told.
    """

    total: int = 0
    done: int = 0
    failed: int = 0
    running: int = 0
    queued: int = 0
    ready: int = 0
    waiting: int = 0
    skipped: int = 0
    running_tasks: tuple[tuple[Any, float], ...] = ()
    locks: Mapping[Any, tuple[Any, ...]] = NO_ENTRIES
    blocked: Mapping[Any, tuple[Any, ...]] = NO_ENTRIES
    paused: bool = False
    aborting: bool = False
    capacity: Mapping[Any, tuple[Any, Any]] = NO_ENTRIES

    def __repr__(self) -> str:
        counts = ", ".join(
            f"{name}={getattr(self, name)}"
            for name in ("total", "done", "failed", "running", "queued", "ready",
                         "waiting", "skipped")
        )
        flags = "".join(
            f", {flag}=True" for flag in ("paused", "aborting") if getattr(self, flag)
        )
        return f"Status({counts}{flags})"
