"""A pool of named threads in this process.

Threads
-------
Threads start as work needs them, as ``ThreadPoolExecutor``'s do: ``submit``
starts one when more jobs are out than there are threads, up to ``workers``.
Jobs out are counted by the scheduler's thread alone (``submit`` adds one,
``wait`` takes away what it returns), so the count costs the workers
nothing. A thread the system refuses to start (``RuntimeError: can't start
new thread``) ends the growth: the run goes on with the threads there are,
after a ``PoolWarning``; with none at all, ``PoolError`` says how many were
asked for and why the system refused.

Daemon or not
-------------
A thread takes its daemon flag from the thread that creates it, so the
threads a task starts would be daemon threads if pexen's were, and the
interpreter would not wait for their work at exit. Our threads therefore
tell the threads their tasks start that they are not daemon threads, as a
plain program's main thread would; yet to the interpreter they are daemon
threads, which it does not wait for at exit: the pool joins them at
``stop()``, or gives up on them (below). CPython reads the flag it waits by
when it starts a thread; what ``daemon`` says afterwards is what the threads
it creates inherit. A pool still serving a run when the interpreter exits
(a run's generator left unfinished) is stopped by an ``atexit`` hook, so
its running tasks end as those of a plain program would.

Timeouts
--------
A job with a ``timeout`` is timed from when its thread starts it. When the
time is up (plus a short grace, ``timeout_grace``, so a task that
enforces its own timeout, like a ``FilesystemFactory`` script, reports it
itself), ``wait()`` reports ``TaskTimeoutError`` for it and the thread
retires: it is never handed another job, and a new one starts if work needs
it. A thread cannot be stopped from outside: the overrunning one goes on
until its task returns, discards what the task produced and ends. A task
that overran but returned before anyone looked (the caller was holding a
result) is reported as timed out all the same, as the process pool would.

``stop()`` waits for every thread to finish its job and end, but abandons a
thread whose task overran its timeout (one ``stop()`` finds running past its
timeout, too): it is not waited for, by ``stop()`` nor by the interpreter's
exit, and a ``PoolWarning`` names its task and thread.

Driving a run live
------------------
No bookkeeping per job but a store: each thread keeps the job it took last
in its *slot*, for ``cancel`` to find. What is queued is what ``_jobs``
holds, what is done is in ``_outcomes``, and the rest runs. ``cancel``
drains ``_jobs`` (dropping the job if it is there, putting the others back
in order), then ``_outcomes`` into ``_early`` (a job whose outcome waits
there has ended); else the job runs, and with *force* it is abandoned: its
outcome (``TaskCancelledError``, naming the thread) is reported at once and
the thread no longer counts as live, so another starts if work needs it.
When the abandoned task returns, its outcome is discarded, and as its
thread takes jobs again, one thread is told to retire (a ``None`` in
``_jobs``); ``stop()`` does not wait for a thread still running an
abandoned task (a timed one retires as on a timeout). ``drop_queued``
drains ``_jobs``; ``wake`` puts ``_WAKE`` in ``_outcomes``. Resizing up
starts threads as work needs them, down puts a ``None`` per thread too many
in ``_jobs``: idle threads take it first, busy ones after their job.
``workers="auto"`` (``AutoWorkers``) is applied in ``wait``.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import threading
import time
import warnings
import weakref
from queue import Empty, SimpleQueue
from typing import Any

from pexen.sched._calling import execute
from pexen.sched._errors import PoolError, PoolWarning
from pexen.sched._naming import task_name
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
_live_pools: weakref.WeakSet[ThreadWorkerPool] = weakref.WeakSet()
_RECHECK = object()  # put by a thread that starts a timed job: recompute deadlines
_ENDED = object()  # put by a thread as it ends, told to by a ``None``
_WAKE = object()  # put by wake(): wait() returns, with what is ready
_DUE = object()  # what _next() returns when its deadline came first
# where our warnings point: the caller's loop over ``Sched.run()``, which
# called submit, wait or stop, which called the method that warns
_USER = 5


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
    """Jobs with a timeout that a thread is running now, and the threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # key -> (deadline, job, the thread running it)
        self.running: dict[int, tuple[float, Job, threading.Thread]] = {}
        # reported as timed out, still running: key -> (job, its thread)
        self.timed_out: dict[int, tuple[Job, threading.Thread]] = {}

    def next_deadline(self) -> float | None:
        """When the first running timed job overruns (None: none runs)."""
        with self.lock:
            return min((d for d, _job, _thread in self.running.values()), default=None)

    def expire(self, now: float) -> list[Job]:
        """Move the jobs past their deadline to ``timed_out``; return them."""
        overdue = []
        with self.lock:
            for key, (deadline, job, thread) in list(self.running.items()):
                if deadline <= now:
                    del self.running[key]
                    self.timed_out[key] = (job, thread)
                    overdue.append(job)
        return overdue


def _work(
    jobs: SimpleQueue, outcomes: SimpleQueue, timed: _Timed, slot: list
) -> None:
    """Worker thread: run jobs until the ``None`` sentinel or until one overruns.

    ``slot[0]`` is the job it took last, for ``cancel`` to find.
    """
    me = threading.current_thread()
    # started as a daemon thread (see "Daemon or not"); the threads our tasks
    # start inherit this instead, so that the interpreter waits for them
    me._daemonic = False  # type: ignore[attr-defined]
    get, put, now = jobs.get, outcomes.put, time.monotonic
    name = me.name  # the worker its outcomes name (journal, trace)
    while (job := get()) is not None:
        slot[0] = job
        timeout = job.timeout
        if timeout is None:
            put(execute(job, name))
            continue
        key = job.key
        start = now()
        limit = timeout + timeout_grace(timeout)
        with timed.lock:
            timed.running[key] = (start + limit, job, me)
        put(_RECHECK)  # wake wait(): it may be blocking with no deadline
        outcome = execute(job, name)
        elapsed = now() - start
        with timed.lock:
            if key in timed.timed_out:  # reported already, and retired: end
                del timed.timed_out[key]
                return
            del timed.running[key]
        put(outcome if elapsed <= limit else _timeout_outcome(job, elapsed))
    put(_ENDED)


class ThreadWorkerPool(WorkerPool):
    """Run tasks in threads of this process (shared memory, bound by the GIL).

    Threads are started as the run needs them, up to ``workers``, and joined
    at its end, named ``pexen-worker-N.M``. The interpreter waits at exit
    for the threads tasks start, as it would without pexen. A running thread
    cannot be stopped: when the run ends early, queued tasks are dropped and
    running ones are waited for; a task that overruns its ``timeout`` is
    reported as failed with ``TaskTimeoutError``, and its thread runs on
    until the task returns, abandoned: neither the end of the run nor the
    interpreter's exit waits for it, a ``PoolWarning`` names it, and
    ``abandoned_threads`` lists it while it runs.
    """

    auto_workers_allowed = True

    def __init__(self, workers: int | str = 1, spare: int | str = "auto") -> None:
        super().__init__(workers, spare)
        self._threads: list[threading.Thread] = []  # every thread of this run
        self._jobs: SimpleQueue = SimpleQueue()
        self._outcomes: SimpleQueue = SimpleQueue()
        self._timed = _Timed()
        self._pool_id = 0
        self._n_live = 0  # threads started and not retired (by a timeout)
        self._n_out = 0  # jobs submitted whose outcome wait() has not returned
        self._most: int | None = None  # threads the system let us have, once short
        # driving a run live
        self._threads_lock = threading.Lock()  # resizing comes from any thread
        self._slots: dict[threading.Thread, list] = {}  # thread -> [its last job]
        self._early: list[Outcome] = []  # taken from _outcomes before wait()
        self._abandoned: dict[int, threading.Thread] = {}  # key -> its thread
        self._given_up: set[threading.Thread] = set()  # running an abandoned task
        self._left_running: tuple[threading.Thread, ...] = ()  # by the last run

    @property
    def thread_limit(self) -> int | None:
        """The threads the last run was held to, the system having refused to
        start more than that (None: it refused none)."""
        return self._most

    @property
    def abandoned_threads(self) -> tuple[threading.Thread, ...]:
        """The threads the last run abandoned that still run (their tasks
        overran their timeout, or were cancelled with force): what they do,
        and what they started, goes on without the pool."""
        return tuple(thread for thread in self._left_running if thread.is_alive())

    def submit(self, job: Job) -> None:
        self._jobs.put(job)
        self._n_out += 1
        if self._n_live < self._n_out and self._n_live < self.workers:
            self._add_threads()

    def wait(self) -> list[Outcome]:
        timed = self._timed
        ready: list[Outcome] = []
        early = self._early  # ready already: do not block
        if early:
            self._early = []
        while not ready and not early:
            deadline = timed.next_deadline() if timed.running else None
            if self.auto_workers is not None:
                deadline = self._auto_resize(deadline)
            item = self._next(deadline)
            if item is _DUE:
                ready = self._expire()
            elif item is _WAKE:
                break
            elif item is not _RECHECK and item is not _ENDED:
                ready.append(item)
        ready += self._take_outcomes()
        if self._abandoned:
            ready = self._discard_abandoned(ready)
        if early:
            ready = early + ready
        self._n_out -= len(ready)
        if self._n_live < self._n_out and self._n_live < self.workers:
            self._add_threads()  # for jobs queued behind a thread that retired
        return ready

    def _next(self, deadline: float | None) -> Any:  # an Outcome, or a marker
        """The next item of ``_outcomes``, or ``_DUE`` once *deadline* (a
        ``time.monotonic()`` value; None: none) has come first."""
        try:
            if deadline is None:
                return self._outcomes.get()
            return self._outcomes.get(timeout=max(0.0, deadline - time.monotonic()))
        except Empty:
            return _DUE

    def _take_outcomes(self) -> list[Outcome]:
        """The outcomes in ``_outcomes`` now, without waiting (markers dropped)."""
        outcomes, taken = self._outcomes, []
        while not outcomes.empty():
            item = outcomes.get()
            if item is not _RECHECK and item is not _ENDED and item is not _WAKE:
                taken.append(item)
        return taken

    def _expire(self) -> list[Outcome]:
        """Report the jobs past their deadline; their threads retire."""
        overdue = self._timed.expire(time.monotonic())
        with self._threads_lock:
            self._n_live -= len(overdue)  # they take no more jobs
        return [_timeout_outcome(job) for job in overdue]

    def _add_threads(self) -> None:
        """Start threads until each job out has one, up to ``workers``."""
        with self._threads_lock:  # resizing may call it from another thread
            wanted = min(self._n_out, self.workers)
            if self._most is not None:
                wanted = min(wanted, self._most)
            while self._n_live < wanted:
                slot: list = [None]
                try:
                    thread = threading.Thread(
                        target=_work,
                        args=(self._jobs, self._outcomes, self._timed, slot),
                        name=f"pexen-worker-{self._pool_id}.{len(self._threads) + 1}",
                        daemon=True,  # to the interpreter: see "Daemon or not"
                    )
                    thread.start()
                except RuntimeError as exc:  # "can't start new thread"
                    self._short_of_threads(exc)
                    return
                self._threads.append(thread)
                self._slots[thread] = slot
                self._n_live += 1

    def _short_of_threads(self, exc: RuntimeError) -> None:
        """Go on with the threads there are, saying so once; fail if none."""
        if self._n_live == 0:
            raise PoolError(
                f"{self!r} could not start any of the {self.workers} threads it was "
                f"asked for: {exc}; ask for fewer workers, or let this process "
                f"have more threads (ulimit -u, memory for their stacks)"
            ) from exc
        self._most = self._n_live
        warnings.warn(
            f"{self!r} could start only {self._n_live} of the {self.workers} "
            f"threads it was asked for ({exc}); the run goes on with "
            f"{self._n_live}",
            PoolWarning,
            stacklevel=_USER,
        )

    def _start(self) -> None:
        self._jobs, self._outcomes, self._timed = SimpleQueue(), SimpleQueue(), _Timed()
        self._pool_id = next(_pool_ids)
        self._threads = []
        self._n_live = self._n_out = 0
        self._most = None
        self._slots, self._early, self._abandoned = {}, [], {}
        self._given_up = set()
        self._left_running = ()
        _live_pools.add(self)

    def _stop(self, cancel: bool) -> None:
        _live_pools.discard(self)
        if cancel:
            try:
                while True:
                    self._jobs.get_nowait()
            except Empty:
                pass
        # one each; retired threads end unasked; one more per thread left to
        # an abandoned task, should it take jobs again
        for _ in range(self._n_live + len(self._given_up)):
            self._jobs.put(None)
        self._await_threads()
        with self._timed.lock:
            abandoned = [
                (job, thread)
                for job, thread in self._timed.timed_out.values()
                if thread.is_alive()
            ]
        given_up = {thread for _job, thread in abandoned} | self._given_up
        for thread in given_up:  # say what it is to the interpreter's exit now
            thread._daemonic = True  # type: ignore[attr-defined]
        if abandoned:
            self._warn_abandoned(abandoned)
        self._left_running = tuple(given_up)
        for thread in self._threads:
            if thread not in given_up:
                thread.join()
        self._threads = []
        self._slots, self._early, self._abandoned = {}, [], {}
        self._given_up = set()

    def _await_threads(self) -> None:
        """Wait until each live thread ended, or overran its job's timeout."""
        timed = self._timed
        n_live = self._n_live
        while n_live:
            item = self._next(timed.next_deadline() if timed.running else None)
            if item is _DUE:
                n_live -= len(timed.expire(time.monotonic()))
            elif item is _ENDED:
                n_live -= 1
        self._n_live = 0

    def _warn_abandoned(self, abandoned: list[tuple[Job, threading.Thread]]) -> None:
        listed = ", ".join(
            f"task {task_name(job.task)!r} (timeout {job.timeout:g} s) in thread "
            f"{thread.name!r}"
            for job, thread in abandoned
        )
        if len(abandoned) == 1:
            what = "a thread still running a task that overran its timeout"
            then = "it runs on until its task returns"
            task, it = "task", "it"
        else:
            what = (f"{len(abandoned)} threads still running tasks that overran "
                    f"their timeout")
            then = "each runs on until its task returns"
            task, it = "tasks", "them"
        warnings.warn(
            f"{self!r} abandons {what}: {listed}. A thread cannot be stopped: "
            f"{then}, and neither the end of the run nor the interpreter's exit "
            f"waits for {it}. Make the {task} give up in time (a timeout of "
            f"{'its' if len(abandoned) == 1 else 'their'} own on what "
            f"{'it waits' if len(abandoned) == 1 else 'they wait'} for), or run "
            f"{it} in a ProcessWorkerPool, which kills {it}",
            PoolWarning,
            stacklevel=_USER,
        )


    # -- driving a run live (see "Driving a run live") --------------------------

    def wake(self) -> None:
        self._outcomes.put(_WAKE)  # SimpleQueue.put: safe in a signal handler

    def _take_queued(self) -> list[Job | None]:
        """Everything in ``_jobs`` now, in order (``None``: a thread told to go)."""
        taken: list[Job | None] = []
        with contextlib.suppress(Empty):
            while True:
                taken.append(self._jobs.get_nowait())
        return taken

    def drop_queued(self) -> list[int]:
        dropped = []
        for job in self._take_queued():
            if job is None:
                self._jobs.put(None)  # told to retire: it still must
            else:
                dropped.append(job.key)
        self._n_out -= len(dropped)
        return dropped

    def cancel(self, key: int, force: bool = False) -> bool:
        found = False
        for job in self._take_queued():
            if job is not None and job.key == key:
                found = True
            else:
                self._jobs.put(job)  # the others go back, in their order
        if found:
            self._n_out -= 1
            return True
        drained = self._take_outcomes()
        if self._abandoned:
            drained = self._discard_abandoned(drained)
        self._early += drained
        if not force or any(outcome[0] == key for outcome in self._early):
            return False  # its outcome is there, or will come
        for thread, (job,) in list(self._slots.items()):
            if job is not None and job.key == key and thread.is_alive():
                self._abandon(job, thread)
                break
        return False  # not found: it just ended, and its outcome comes

    def _abandon(self, job: Job, thread: threading.Thread) -> None:
        """Report running *job* cancelled now; another thread may take its place."""
        timed, key = self._timed, job.key
        with timed.lock:
            if timed.running.pop(key, None) is not None:
                timed.timed_out[key] = (job, thread)  # it retires, as on a timeout
            else:
                self._abandoned[key] = thread
                self._given_up.add(thread)
        with self._threads_lock:
            self._n_live -= 1
        self._early.append(Outcome(key, job.shared, None, cancelled_error(
            job.task,
            f"; its thread {thread.name!r} cannot be stopped, so it was "
            f"abandoned: it runs on until the task returns, and what it "
            f"returns is discarded",
        )))
        if self._n_live < self._n_out:
            self._add_threads()

    def _discard_abandoned(self, ready: list[Outcome]) -> list[Outcome]:
        """Drop the late outcomes of abandoned tasks; their threads are back,
        so one thread retires for each."""
        kept = []
        for outcome in ready:
            thread = self._abandoned.pop(outcome[0], None)
            if thread is None:
                kept.append(outcome)
                continue
            self._given_up.discard(thread)
            with self._threads_lock:
                self._n_live += 1
            self._retire(1)
        return kept

    def _retire(self, n: int) -> None:
        """Tell *n* threads to end, idle ones first (a ``None`` each)."""
        with self._threads_lock:
            n = min(n, self._n_live)
            self._n_live -= n
        for _ in range(n):
            self._jobs.put(None)

    def _resize(self, workers: int, old: int) -> None:
        if workers > old:
            if self._n_live < self._n_out:
                self._add_threads()
        elif self._n_live > workers:
            self._retire(self._n_live - workers)

    def auto_workers_limit(self) -> int:
        return min(32, usable_cpus() + 4)  # as ThreadPoolExecutor's default

    def _auto_resize(self, deadline: float | None) -> float:
        """Apply ``workers="auto"``; return when to look next (or *deadline*)."""
        auto = self.auto_workers
        assert auto is not None
        now = time.monotonic()
        workers = auto.next_workers(self._workers, self._n_out > self._n_live, now)
        if workers != self._workers:
            self._set_workers(workers)
        look = now + auto.due(now)
        return look if deadline is None else min(deadline, look)


@atexit.register
def _stop_live_pools() -> None:
    """Stop pools still serving a run at exit: their running tasks end first."""
    for pool in list(_live_pools):
        pool.stop(cancel=True)
