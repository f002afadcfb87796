"""How long each task ran, worked out from what the scheduler shows.

Only a fallback: pexen's pools time each task themselves (``Sched.attempts``),
and ``pexen run`` reports that. This clock estimates when tasks started, for
the live display, and durations for a pool that cannot tell.

``Sched.in_flight`` tells when a task was handed to the pool; its result tells
when it ended. With spare slots a task may wait in the pool's queue before a
worker takes it, so the time from hand-over to result would charge it for the
tasks ahead of it. Pools serve their queue in order, so the clock replays
that queue: a queued task starts when a worker frees up, which is when the
result of a running task comes back.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any


class RunClock:
    """Estimate start times and durations of the tasks of one run.

    Call ``resumed()`` just before asking the scheduler for the next result
    and ``finished(task, sched.in_flight)`` when one arrives.
    """

    def __init__(self, workers: Callable[[], int]) -> None:
        self.workers = workers  # asked each time: a Dask cluster may grow
        self.t_resume = time.monotonic()
        self.n_running = 0
        self.queue: deque[int] = deque()
        self.task2start: dict[int, float] = {}
        self.task2dispatch: dict[int, float] = {}

    def resumed(self) -> None:
        """Note that the scheduler may now dispatch tasks."""
        self.t_resume = time.monotonic()

    def _dispatched(self, key: int, when: float) -> None:
        self.task2dispatch[key] = when
        if self.n_running < self.workers():
            self.task2start[key] = when
            self.n_running += 1
        else:
            self.queue.append(key)

    def started(self, task: Any) -> float | None:
        """When *task* started running, as far as the clock knows."""
        return self.task2start.get(id(task))

    def finished(self, task: Any, in_flight: Mapping[Any, float]) -> float:
        """Record that *task*'s result came back now; return how long it ran.

        *in_flight* is ``Sched.in_flight`` at this moment: it shows the tasks
        handed to the pool since the last look, in the order they were.
        """
        now = time.monotonic()
        key = id(task)
        if key not in self.task2dispatch:
            # Handed over and done between two looks: it came back first, so
            # it was ahead of the tasks handed over with it.
            self._dispatched(key, self.t_resume)
        for other, when in in_flight.items():
            if id(other) not in self.task2dispatch:
                self._dispatched(id(other), when)
        dispatched = self.task2dispatch.pop(key)
        start = self.task2start.pop(key, None)
        if start is None:  # a pool that does not serve its queue in order
            self.queue.remove(key)
            start = dispatched
        else:
            self.n_running -= 1
        while self.queue and self.n_running < self.workers():
            self.task2start[self.queue.popleft()] = now
            self.n_running += 1
        return max(0.0, now - start)
