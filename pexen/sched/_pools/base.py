"""The one small interface every worker pool implements.

The scheduler drives a pool through four calls and never learns where tasks
run. A *job* is the tuple ``(key, task, pass_shared, kwargs, shared, timeout)``
and an *outcome* the tuple ``(key, shared, ret, excinfo)``; ``key`` is an int
the scheduler uses to find its own record again. Tuples keep the per-task cost
low on the hot path.

Lifecycle of one run::

    pool.start()
    pool.submit(job)            # at most pool.capacity jobs in flight
    outcomes = pool.wait()      # blocks until at least one is done
    ...
    pool.stop(cancel=...)       # always called, from a ``finally``

``submit`` may buffer jobs (to send them in batches); ``wait`` must flush
them before it blocks. ``stop(cancel=True)`` drops jobs not yet started and
must leave no thread or process behind; it must be idempotent.
"""

from __future__ import annotations

import abc
from typing import Any

from pexen.sched._errors import PoolError

Job = tuple  # (key, task, pass_shared, kwargs, shared, timeout)
Outcome = tuple  # (key, shared, ret, excinfo)


def check_count(name: str, value: Any, minimum: int) -> int:
    """Validate a worker/spare count, naming it in the error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PoolError(f"{name}={value!r}: expected an int >= {minimum}")
    return value


class WorkerPool(abc.ABC):
    """Base class of pexen's pools: runs jobs somewhere and reports outcomes.

    ``workers`` is how many jobs run at once; ``spare`` how many more are
    queued so workers do not starve while the caller handles a result.
    """

    def __init__(self, workers: int = 1, spare: int = 1) -> None:
        self.workers = check_count("workers", workers, 1)
        self.spare = check_count("spare", spare, 0)
        self._active = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workers={self.workers}, spare={self.spare})"

    @property
    def capacity(self) -> int:
        """How many jobs the scheduler may have in flight at once."""
        return self.workers + self.spare

    def start(self) -> None:
        """Prepare to serve one run; refuse a second run at the same time."""
        if self._active:
            raise PoolError(f"{self!r} is already serving a run")
        self._active = True
        self._start()

    def stop(self, cancel: bool = False) -> None:
        """End the run: drop unstarted jobs if *cancel*, release every worker."""
        if not self._active:
            return
        try:
            self._stop(cancel)
        finally:
            self._active = False

    @abc.abstractmethod
    def submit(self, job: Job) -> None:
        """Hand one job to the pool (it may be buffered until ``wait``)."""

    @abc.abstractmethod
    def wait(self) -> list[Outcome]:
        """Block until at least one job is done; return every outcome ready."""

    @abc.abstractmethod
    def _start(self) -> None: ...

    @abc.abstractmethod
    def _stop(self, cancel: bool) -> None: ...
