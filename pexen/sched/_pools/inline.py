"""A pool that runs each task in the caller's thread, one at a time."""

from __future__ import annotations

from collections import deque

from pexen.sched._calling import execute
from pexen.sched._pools.base import Job, Outcome, WorkerPool


class InlineWorkerPool(WorkerPool):
    """Run tasks in the caller's thread when the scheduler waits for them.

    No concurrency at all: the easiest pool to debug a task with ``pdb`` and
    to test the planner with. One task is in flight at a time.
    """

    def __init__(self) -> None:
        super().__init__(workers=1, spare=0)
        self._queue: deque[Job] = deque()

    def __repr__(self) -> str:
        return "InlineWorkerPool()"

    def submit(self, job: Job) -> None:
        self._queue.append(job)

    def wait(self) -> list[Outcome]:
        return [execute(self._queue.popleft())]

    def _start(self) -> None:
        self._queue.clear()

    def _stop(self, cancel: bool) -> None:
        self._queue.clear()
