"""A pool that runs each task in the caller's thread, one at a time."""

from __future__ import annotations

from collections import deque

from pexen.sched._calling import execute
from pexen.sched._errors import PoolError
from pexen.sched._pools.base import Job, Outcome, WorkerPool


class InlineWorkerPool(WorkerPool):
    """Run tasks in the caller's thread when the scheduler waits for them.

    No concurrency at all: the easiest pool to debug a task with ``pdb`` and
    to test the planner with. One task is in flight at a time; a running one
    cannot be stopped (it runs in the very thread that would stop it), and
    the worker count stays 1.
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

    def cancel(self, key: int, force: bool = False) -> bool:
        for job in self._queue:
            if job.key == key:
                self._queue.remove(job)
                return True
        return False

    def drop_queued(self) -> list[int]:
        dropped = [job.key for job in self._queue]
        self._queue.clear()
        return dropped

    def _set_workers(self, workers: int) -> None:
        if workers == 1:
            return
        raise PoolError(
            f"InlineWorkerPool runs one task at a time; it cannot have "
            f"{workers} workers (use a ThreadWorkerPool to resize)"
        )

    def _start(self) -> None:
        self._queue.clear()

    def _stop(self, cancel: bool) -> None:
        self._queue.clear()
