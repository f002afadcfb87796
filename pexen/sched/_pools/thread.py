"""A pool of named threads in this process.

Timeouts
--------
A job with a ``timeout`` is timed from when its thread starts it. When the
time is up (plus a short grace, ``timeout_grace``, so a task that
enforces its own timeout, like a ``FilesystemFactory`` script, reports it
itself), ``wait()`` reports ``TaskTimeoutError`` for it and starts a
replacement thread, so the run keeps its ``workers`` threads busy. A thread
cannot be stopped from outside: the overrunning one goes on until its task
returns, is never handed another job, discards what the task produced and
ends. A task that overran but returned before anyone looked (the caller was
holding a result) is reported as timed out all the same, as the process pool
would. ``stop()`` joins every thread, overrunning ones too; it first calls
``on_overrun_wait`` (when set) with the tasks it is about to wait for that
way, so a caller can say why it waits.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any

from pexen.sched._calling import execute
from pexen.sched._pools.base import (
    Job,
    Outcome,
    WorkerPool,
    raised,
    timeout_error,
    timeout_grace,
)

_pool_ids = itertools.count(1)
_RECHECK = object()  # put by a thread that starts a timed job: recompute deadlines


def _timeout_outcome(job: Job, elapsed: float | None = None) -> Outcome:
    if elapsed is None:  # still running
        then = (
            "; a thread cannot be stopped, so it runs on until the task returns, "
            "and what it returns is discarded"
        )
    else:
        then = f" (it returned after {elapsed:.3g} s); what it returned is discarded"
    err = timeout_error(job.task, job.timeout, then)  # type: ignore[arg-type]
    return Outcome(job.key, job.shared, None, raised(err))


class _Timed:
    """Jobs with a timeout that a thread is running now."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: dict[int, tuple[float, Job]] = {}  # key -> (deadline, job)
        self.timed_out: dict[int, Job] = {}  # reported, still running: key -> job


def _work(jobs: SimpleQueue, outcomes: SimpleQueue, timed: _Timed) -> None:
    """Worker thread: run jobs until the ``None`` sentinel or until one overruns."""
    get, put, now = jobs.get, outcomes.put, time.monotonic
    while (job := get()) is not None:
        timeout = job.timeout
        if timeout is None:
            put(execute(job))
            continue
        key = job.key
        start = now()
        limit = timeout + timeout_grace(timeout)
        with timed.lock:
            timed.running[key] = (start + limit, job)
        put(_RECHECK)  # wake wait(): it may be blocking with no deadline
        outcome = execute(job)
        elapsed = now() - start
        with timed.lock:
            if key in timed.timed_out:  # reported already, and replaced: retire
                del timed.timed_out[key]
                return
            del timed.running[key]
        put(outcome if elapsed <= limit else _timeout_outcome(job, elapsed))


class ThreadWorkerPool(WorkerPool):
    """Run tasks in threads of this process (shared memory, bound by the GIL).

    Threads are started for each run and joined at its end, named
    ``pexen-worker-N.M``. A running thread cannot be stopped: when the run
    ends early, queued tasks are dropped and running ones are waited for; a
    task that overruns its ``timeout`` is reported as failed with
    ``TaskTimeoutError`` while its thread, replaced, runs on until it returns.

    ``on_overrun_wait``, if set, is called by ``stop()`` with the tasks that
    overran their timeout and still run, just before it waits for them.
    """

    on_overrun_wait: Callable[[list[Any]], None] | None = None

    def __init__(self, workers: int = 1, spare: int = 1) -> None:
        super().__init__(workers, spare)
        self._threads: list[threading.Thread] = []
        self._jobs: SimpleQueue = SimpleQueue()
        self._outcomes: SimpleQueue = SimpleQueue()
        self._timed = _Timed()
        self._pool_id = 0
        self._n_started = 0

    def submit(self, job: Job) -> None:
        self._jobs.put(job)

    def wait(self) -> list[Outcome]:
        outcomes, timed = self._outcomes, self._timed
        ready: list[Outcome] = []
        while not ready:
            deadline = None
            if timed.running:
                with timed.lock:
                    deadlines = [d for d, _job in timed.running.values()]
                deadline = min(deadlines, default=None)
            try:
                if deadline is None:
                    item = outcomes.get()
                else:
                    item = outcomes.get(timeout=max(0.0, deadline - time.monotonic()))
            except Empty:
                ready = self._expire()
                continue
            if item is not _RECHECK:
                ready.append(item)
        while not outcomes.empty():
            item = outcomes.get()
            if item is not _RECHECK:
                ready.append(item)
        return ready

    def _expire(self) -> list[Outcome]:
        """Report the jobs past their deadline; replace their threads."""
        timed, now = self._timed, time.monotonic()
        overdue = []
        with timed.lock:
            for key, (deadline, job) in list(timed.running.items()):
                if deadline <= now:
                    del timed.running[key]
                    timed.timed_out[key] = job
                    overdue.append(job)
        for _ in overdue:
            self._start_thread()  # the overrunning ones take no more jobs
        return [_timeout_outcome(job) for job in overdue]

    def _start_thread(self) -> None:
        self._n_started += 1
        thread = threading.Thread(
            target=_work,
            args=(self._jobs, self._outcomes, self._timed),
            name=f"pexen-worker-{self._pool_id}.{self._n_started}",
            daemon=True,
        )
        thread.start()
        self._threads.append(thread)

    def _start(self) -> None:
        self._jobs, self._outcomes, self._timed = SimpleQueue(), SimpleQueue(), _Timed()
        self._pool_id = next(_pool_ids)
        self._n_started = 0
        self._threads = []
        for _ in range(self.workers):
            self._start_thread()

    def _stop(self, cancel: bool) -> None:
        if cancel:
            try:
                while True:
                    self._jobs.get_nowait()
            except Empty:
                pass
        for _ in self._threads:  # one each; overrunning threads retire unasked
            self._jobs.put(None)
        with self._timed.lock:
            overrunning = [job.task for job in self._timed.timed_out.values()]
        if overrunning and self.on_overrun_wait is not None:
            self.on_overrun_wait(overrunning)
        for thread in self._threads:
            thread.join()
        self._threads = []
