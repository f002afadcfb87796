"""The events of a ``pexen run``, told to its observers (journal, trace, log).

A stand-in for ``Sched.observe`` (SPEC §8) until the scheduler tells its
events itself: the command's loop tells what it sees, in the form SPEC §8
gives them. Tasks handed to the pool are told as dispatched when the loop
next gets control (at each result), each result as started (its pool's
start, from the duration it measured) and finished; tasks left unrun as
skipped at the end.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from pexen.sched import Sched, TaskRes
from pexen.sched._naming import task_name
from pexen.sched._result import task_key


class Event(NamedTuple):
    """One change of a run (SPEC §8)."""

    kind: str
    time: float
    wall: float
    task: Any = None
    worker: str | None = None
    res: TaskRes | None = None
    reason: str | None = None
    workers: int | None = None
    duration: float | None = None

    @property
    def name(self) -> str | None:
        return None if self.task is None else task_name(self.task)


class LoopEvents:
    """Tell *observers* the events of *sched*'s run as the loop meets them."""

    def __init__(self, observers: Sequence[Any], sched: Sched) -> None:
        self.observers = list(observers)
        self.sched = sched
        self.told: set[Any] = set()  # task keys told as dispatched
        self.offset = time.time() - time.monotonic()

    def _tell(self, kind: str, when: float | None = None, **fields: Any) -> None:
        if not self.observers:
            return
        if when is None:
            when = time.monotonic()
        event = Event(kind, when, when + self.offset, **fields)
        for observer in self.observers:
            observer(event)

    def _dispatched(self) -> None:
        for task, when in self.sched.in_flight.items():
            key = task_key(task)
            if key not in self.told:
                self.told.add(key)
                self._tell("dispatched", when, task=task)

    def start(self, workers: int) -> None:
        self._tell("run-started", workers=workers)

    def result(self, res: TaskRes, duration: float | None) -> None:
        """Tell that *res* came, after running *duration* seconds."""
        now = time.monotonic()
        if task_key(res.task) not in self.told:
            self._tell("dispatched", now if duration is None else now - duration,
                       task=res.task)
        if duration is not None:
            self._tell("started", now - duration, task=res.task)
        self._tell("finished", now, task=res.task, res=res, duration=duration)
        self._dispatched()  # those handed out meanwhile, before the loop goes on

    def end(self, skipped: Mapping[Any, str]) -> None:
        for task, reason in skipped.items():
            self._tell("skipped", task=task, reason=reason)
        self._tell("run-ended")
