"""Events of SPEC §8 for the observers' tests: records made by hand, and a
real run told to observers as ``Sched.observe`` tells it."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from pexen.sched import Sched, TaskRes
from pexen.sched._naming import task_name
from pexen.sched.pool import InlineWorkerPool


class Event(NamedTuple):
    """An event as SPEC §8 describes it (``name`` worked out from ``task``)."""

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


class Clock:
    """Monotonic and wall times that move only when told (``tick``)."""

    def __init__(self, start: float = 1000.0, wall: float = 1_700_000_000.0) -> None:
        self.now = start
        self.offset = wall - start

    def tick(self, seconds: float = 0.0) -> tuple[float, float]:
        self.now += seconds
        return self.now, self.now + self.offset

    def event(self, kind: str, after: float = 0.0, **fields: Any) -> Event:
        mono, wall = self.tick(after)
        return Event(kind, mono, wall, **fields)


def observed_run(
    sched: Sched, observers: Iterable[Any], pool: Any = None, resume: Any = None
) -> Iterator[TaskRes]:
    """Run *sched* on *pool* (default: inline), telling each observer the
    events of the run: each result as dispatched, started and finished on
    worker "w1", each task left unrun as skipped."""
    observers = list(observers)
    results = sched.run(InlineWorkerPool() if pool is None else pool, resume=resume)

    def tell(kind: str, **fields: Any) -> None:
        mono = time.monotonic()
        event = Event(kind, mono, mono + (time.time() - time.monotonic()), **fields)
        for observer in observers:
            observer(event)

    tell("run-started", workers=1)
    for res in results:
        duration = sched.attempts(res.task)[-1][1]
        tell("dispatched", task=res.task)
        tell("started", task=res.task, worker="w1")
        tell("finished", task=res.task, worker="w1", res=res, duration=duration)
        yield res
    for task, reason in sched.skipped.items():
        tell("skipped", task=task, reason=reason)
    tell("run-ended")
