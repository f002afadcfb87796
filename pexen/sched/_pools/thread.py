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

Driving a run live
------------------
No bookkeeping per job: what is queued is what ``_jobs`` holds, what is
done is in ``_outcomes``, and the rest runs. ``cancel`` drains ``_jobs``
(dropping the job if it is there, putting the others back in order), then
``_outcomes`` into ``_early`` (a job whose outcome waits there has ended);
else the job runs, and with *force* it is abandoned: its outcome
(``TaskCancelledError``) is reported at once, a thread is started in its
stead, and when its thread ends the job, the outcome is discarded and one
thread retires (a ``None`` in ``_jobs``); ``stop()`` does not wait for an
abandoned thread. ``drop_queued`` drains ``_jobs``.
``wake`` puts ``_WAKE`` in ``_outcomes``. Resizing starts threads at once,
or puts a ``None`` per thread too many in ``_jobs``: idle threads take it
first, busy ones after their job. ``workers="auto"`` (``AutoWorkers``) is
applied in ``wait``.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any

from pexen.sched._calling import execute
from pexen.sched._pools.autoworkers import usable_cpus
from pexen.sched._pools.base import (
    Job,
    Outcome,
    WorkerPool,
    cancelled_error,
    raised,
    timeout_error,
    timeout_grace,
)

_pool_ids = itertools.count(1)
_RECHECK = object()  # put by a thread that starts a timed job: recompute deadlines
_WAKE = object()  # put by wake(): wait() returns, with what is ready


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


def _work(
    jobs: SimpleQueue, outcomes: SimpleQueue, timed: _Timed, slot: list
) -> None:
    """Worker thread: run jobs until the ``None`` sentinel or until one overruns.

    ``slot[0]`` is the job it took last, for ``cancel`` to find.
    """
    get, put, now = jobs.get, outcomes.put, time.monotonic
    while (job := get()) is not None:
        slot[0] = job
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
    auto_workers_allowed = True

    def __init__(self, workers: int | str = 1, spare: int | str = "auto") -> None:
        super().__init__(workers, spare)
        self._threads: list[threading.Thread] = []
        self._jobs: SimpleQueue = SimpleQueue()
        self._outcomes: SimpleQueue = SimpleQueue()
        self._timed = _Timed()
        self._pool_id = 0
        self._n_started = 0
        self._threads_lock = threading.Lock()  # resizing may come from any thread
        self._early: list[Outcome] = []  # taken from _outcomes before wait()
        self._abandoned: set[int] = set()  # keys whose late outcome is discarded
        self._slots: dict[threading.Thread, list] = {}  # thread -> [its last job]
        self._given_up: set[threading.Thread] = set()  # running a cancelled job

    def submit(self, job: Job) -> None:
        self._jobs.put(job)

    def wait(self) -> list[Outcome]:
        outcomes, timed = self._outcomes, self._timed
        ready: list[Outcome] = []
        early = self._early  # ready already: do not block
        if early:
            self._early = []
        while not ready and not early:
            deadline = None
            if timed.running:
                with timed.lock:
                    deadlines = [d for d, _job in timed.running.values()]
                deadline = min(deadlines, default=None)
            if self.auto_workers is not None:
                deadline = self._auto_resize(deadline)
            try:
                if deadline is None:
                    item = outcomes.get()
                else:
                    item = outcomes.get(timeout=max(0.0, deadline - time.monotonic()))
            except Empty:
                ready = self._expire()
                continue
            if item is _WAKE:
                break
            if item is not _RECHECK:
                ready.append(item)
        while not outcomes.empty():
            item = outcomes.get()
            if item is not _RECHECK and item is not _WAKE:
                ready.append(item)
        if self._abandoned:
            ready = self._discard_abandoned(ready)
        return early + ready if early else ready

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
        with self._threads_lock:
            self._n_started += 1
            slot: list = [None]
            thread = threading.Thread(
                target=_work,
                args=(self._jobs, self._outcomes, self._timed, slot),
                name=f"pexen-worker-{self._pool_id}.{self._n_started}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
            self._slots[thread] = slot

    def _start(self) -> None:
        self._jobs, self._outcomes, self._timed = SimpleQueue(), SimpleQueue(), _Timed()
        self._pool_id = next(_pool_ids)
        self._n_started = 0
        self._threads = []
        self._early, self._abandoned, self._slots = [], set(), {}
        self._given_up = set()
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
            if thread not in self._given_up:  # cancelled: not waited for
                thread.join()
        self._threads = []
        self._early, self._abandoned, self._slots = [], set(), {}
        self._given_up = set()

    # -- driving a run live (see "Driving a run live") --------------------------

    def wake(self) -> None:
        self._outcomes.put(_WAKE)  # SimpleQueue.put: safe in a signal handler

    def drop_queued(self) -> list[int]:
        dropped = []
        jobs = self._jobs
        with contextlib.suppress(Empty):
            while True:
                job = jobs.get_nowait()
                if job is None:  # a thread told to retire: it still must
                    jobs.put(None)
                    break
                dropped.append(job.key)
        return dropped

    def cancel(self, key: int, force: bool = False) -> bool:
        jobs, kept, found = self._jobs, [], False
        with contextlib.suppress(Empty):
            while True:
                job = jobs.get_nowait()
                if job is not None and job.key == key:
                    found = True
                else:
                    kept.append(job)
        for job in kept:  # the others go back, in their order
            jobs.put(job)
        if found:
            return True
        outcomes, drained = self._outcomes, []
        while not outcomes.empty():
            item = outcomes.get()
            if item is not _RECHECK and item is not _WAKE:
                drained.append(item)
        if self._abandoned:
            drained = self._discard_abandoned(drained)
        self._early += drained
        if not force or any(outcome[0] == key for outcome in self._early):
            return False  # its outcome is there, or will come
        for thread, (job,) in list(self._slots.items()):
            if job is not None and job.key == key:
                self._abandon(job, thread)
                break
        return False  # not found: it just ended, and its outcome comes

    def _abandon(self, job: Job, thread: threading.Thread) -> None:
        """Report running *job* cancelled now; a new thread takes its place."""
        timed, key = self._timed, job.key
        with timed.lock:
            if timed.running.pop(key, None) is not None:
                timed.timed_out[key] = job  # it retires by itself, as on a timeout
            else:
                self._abandoned.add(key)
        self._given_up.add(thread)
        self._early.append(Outcome(key, job.shared, None, cancelled_error(
            job.task,
            f"; its thread {thread.name!r} cannot be stopped, so it was "
            f"abandoned: it runs on until the task returns, and what it "
            f"returns is discarded",
        )))
        self._start_thread()

    def _discard_abandoned(self, ready: list[Outcome]) -> list[Outcome]:
        """Drop the late outcomes of abandoned jobs; retire a thread for each."""
        kept = []
        for outcome in ready:
            if outcome[0] in self._abandoned:
                self._abandoned.discard(outcome[0])
                self._jobs.put(None)  # one thread too many now
            else:
                kept.append(outcome)
        return kept

    def _resize(self, workers: int, old: int) -> None:
        if workers > old:
            for _ in range(workers - old):
                self._start_thread()
        else:
            for _ in range(old - workers):
                self._jobs.put(None)  # idle threads take it first

    def auto_workers_limit(self) -> int:
        return min(32, usable_cpus() + 4)  # as ThreadPoolExecutor's default

    def _auto_resize(self, deadline: float | None) -> float:
        """Apply ``workers="auto"``; return when to look next (or *deadline*)."""
        auto = self.auto_workers
        assert auto is not None
        now = time.monotonic()
        workers = auto.next_workers(self._workers, not self._jobs.empty(), now)
        if workers != self._workers:
            self._set_workers(workers)
        look = now + auto.due(now)
        return look if deadline is None else min(deadline, look)
