"""Retries (``SchedMeta.retries``, ``retry_on``, ``retry_delay``, ``retry_backoff``).

Design
======

A failed attempt is retried when the task has retries left and its
exception is one of ``retry_on`` (by ``isinstance``). A ``TaskFailError`` is
a controlled failure, a decision of the task: it is retried only when
``retry_on`` names ``TaskFailError`` or a subclass it is an instance of. A
cancelled task (``TaskCancelledError``) is never retried. A worker's crash
(``WorkerCrashError``) and a timeout (``TaskTimeoutError``) are exceptions
like any other: ``retry_on``'s default, ``(Exception,)``, retries them.

The scheduler loop owns the retries: a failed attempt that will be retried
yields no ``TaskRes`` and completes nothing in the planner (its dependents
see nothing); the planner takes back its locks and capacity, and the task
waits, holding no worker, until it is due: at once without a delay, else
``retry_delay * retry_backoff ** (n - 1)`` seconds after its n-th failure
(at most a year). :class:`RetryTimer` keeps the tasks waiting for their
delay in a heap of ``(due, seq, info)``; the loop takes the due ones before
each dispatch. While the loop blocks in ``pool.wait()``, a timer thread (one
per run, started at the first delay, stopped at the end of the run) calls
``pool.wake()`` when the next one is due; with nothing in the pool, the loop
waits on its own mailbox until then (under ``Sched.arun``, it awaits a
command up to then, the event loop free).
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from typing import Any

from pexen.sched._errors import TaskFailError
from pexen.sched.meta import MAX_TIMEOUT


class RetryPlan:
    """The retries of one task in a run (``info.retry``; None without any)."""

    __slots__ = ("attempts", "backoff", "delay", "left", "retry_on")

    def __init__(self, meta: Any) -> None:
        self.left = meta.retries  # retries left
        self.retry_on = meta.retry_on
        self.delay = meta.retry_delay
        self.backoff = meta.retry_backoff
        # (excinfo, duration) of each failed attempt that was retried
        self.attempts: list[tuple[Any, float | None]] = []


def retryable(exc: BaseException | None, retry_on: tuple[type[BaseException], ...],
              never: tuple[type[BaseException], ...] = ()) -> bool:
    """Whether an attempt that raised *exc* is worth another under *retry_on*.

    *never* lists exceptions that are never retried (a cancelled task).
    """
    if exc is None or isinstance(exc, never):
        return False
    if isinstance(exc, TaskFailError):
        return any(
            issubclass(kind, TaskFailError) and isinstance(exc, kind)
            for kind in retry_on
        )
    return isinstance(exc, retry_on)


def retry_delay(delay: float, backoff: float, failures: int) -> float:
    """Seconds to wait after the *failures*-th failed attempt (at most a year)."""
    if not delay:
        return 0.0
    try:
        seconds = float(delay) * float(backoff) ** (failures - 1)
    except OverflowError:
        return float(MAX_TIMEOUT)
    return min(seconds, float(MAX_TIMEOUT))


class RetryTimer:
    """Tasks waiting for the delay of their retry, and the thread that wakes
    the loop when one is due (see the module docstring)."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self.heap: list[tuple[float, int, Any]] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self.heap)

    def add(self, info: Any, due: float) -> None:
        """Hold *info* until ``time.monotonic()`` reaches *due*."""
        with self._cond:
            heapq.heappush(self.heap, (due, info.seq, info))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="pexen-retry-timer", daemon=True
                )
                self._thread.start()
            else:
                self._cond.notify()

    def due(self, now: float) -> list[Any]:
        """Take out the tasks due at *now*, earliest first."""
        heap = self.heap
        if not heap or heap[0][0] > now:
            return []
        out = []
        with self._cond:
            while heap and heap[0][0] <= now:
                out.append(heapq.heappop(heap)[2])
            self._cond.notify()  # the thread looks at the next one
        return out

    def next_due(self) -> float | None:
        """When the first task waiting is due, or None."""
        heap = self.heap
        return heap[0][0] if heap else None

    def remove(self, info: Any) -> bool:
        """Take *info* out (it was cancelled); False if it was not waiting."""
        with self._cond:
            for i, entry in enumerate(self.heap):
                if entry[2] is info:
                    self.heap[i] = self.heap[-1]
                    self.heap.pop()
                    heapq.heapify(self.heap)
                    self._cond.notify()
                    return True
        return False

    def close(self) -> list[Any]:
        """Stop the thread (joined); return the tasks that were still waiting."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            waiting = [entry[2] for entry in sorted(self.heap)]
            self.heap.clear()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        return waiting

    def _run(self) -> None:
        """Call ``wake`` once for each task that becomes first and due.

        ``wake`` is called without the condition held: it may take the
        pool's own locks.
        """
        cond = self._cond
        told = None  # the (due, seq) of the task last woken for
        while True:
            with cond:
                while True:
                    if self._closed:
                        return
                    first = self.heap[0][:2] if self.heap else None
                    if first is None or first == told:
                        cond.wait()
                        continue
                    left = first[0] - time.monotonic()
                    if left > 0:
                        cond.wait(left)
                        continue
                    told = first
                    break
            self._wake()
