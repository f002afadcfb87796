"""Events for the observers' tests: ``pexen.sched.Event`` records made by
hand on a clock the test moves, and a real run its observers watch."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pexen.sched import Event, Sched, TaskRes
from pexen.sched.pool import InlineWorkerPool


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
    """Run *sched* on *pool* (default: inline) with *observers* registered
    through ``Sched.observe`` for this run."""
    unregister = [sched.observe(observer) for observer in observers]
    try:
        yield from sched.run(InlineWorkerPool() if pool is None else pool,
                             resume=resume)
    finally:
        for undo in unregister:
            undo()
