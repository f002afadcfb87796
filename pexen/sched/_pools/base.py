"""What every pool shares: the pool interface, its records, and common helpers.

The scheduler drives a pool through four calls and never learns where tasks
run. A :class:`Job` goes in, an :class:`Outcome` comes out; both are named
tuples, read by name where it helps and unpacked where speed counts. ``key``
is an int the scheduler uses to find its own record again.

Lifecycle of one run::

    pool.start()
    pool.submit(job)            # at most pool.capacity jobs in flight
    outcomes = pool.wait()      # blocks until at least one is done
    ...
    pool.stop(cancel=...)       # always called, from a ``finally``

``submit`` may buffer jobs (to send them in batches); ``wait`` must flush
them before it blocks. ``stop(cancel=True)`` drops jobs not yet started and
must leave no thread or process behind; it must be idempotent.

From an event loop (``Sched.arun``, ``pexen.amap``) the same run goes::

    await pool.start_async()
    outcomes = await pool.wait_async(jobs)  # submit jobs, then wait
    ...
    await pool.stop_async(cancel=...)

By default these make the blocking calls in a thread of the run's own
(``bridge``), so the loop never blocks on the pool; a pool that runs its
tasks on the loop itself (``AsyncWorkerPool``) overrides them.

Driving a run live (``Sched.pause``, ``abort``, ``cancel``, ``resize``,
``status``) asks more of a pool; each call has a default that does the
least, so an older pool still works, only less promptly:

- ``wake()``, from any thread or a signal handler: make a ``wait()`` that
  blocks return soon, with the outcomes ready (perhaps none). Default:
  nothing (the scheduler then notices a control call at the next outcome).
- ``cancel(key, force)``: drop job *key* if it has not started (True: no
  outcome will come for it); with *force*, stop it where the pool can (its
  outcome then carries ``TaskCancelledError``). Default: False. A pool that
  can only learn later whether a job it was asked to drop had started (a
  worker process holding it) reports a dropped one with an outcome whose
  excinfo is ``DROPPED``.
- ``drop_queued()``: drop every job not started; return their keys.
  Default: ``[]``.
- ``running()``: the jobs running now, ``{key: (started, worker)}``, or None
  where the pool cannot tell (default).
- ``workers`` may be set while a run goes on (``_resize``); the default
  just changes how many jobs the scheduler hands out.

Besides the interface, this module holds what several pools need alike, so
that they agree: when a timeout is enforced (:func:`timeout_grace`), how an
overrun is worded (:func:`timeout_error`), how an error made in the pool gets
a real traceback (:func:`raised`), and how SIGINT is kept away from a thread
while it starts workers, or let in for a wait it may end (:func:`sigint_blocked`).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from pexen.sched._errors import PoolError, TaskCancelledError, TaskTimeoutError
from pexen.sched._naming import task_name
from pexen.sched._pools.autoworkers import AutoWorkers
from pexen.sched._pools.bridge import Bridge, unstoppable
from pexen.sched._result import ExceptionInfo

# What ``running()`` maps a job's key to: when it started and on which worker.
Running = tuple[float, "str | None"]

# The excinfo of the outcome of a job dropped before it started, reported
# after ``cancel()`` or ``drop_queued()`` had returned (see the docstring).
DROPPED = ExceptionInfo(
    TaskCancelledError, TaskCancelledError("dropped before it started"), None
)


class Job(NamedTuple):
    """One task as the scheduler hands it to a pool."""

    key: int
    task: Any
    pass_shared: bool  # call as task(shared, **kwargs), else task(**kwargs)
    kwargs: Mapping[str, Any]
    shared: dict
    timeout: float | None


class Outcome(NamedTuple):
    """How one job ended, as a pool reports it back.

    ``started`` is the ``time.monotonic()`` at which the task started, where
    the pool knows it in this host's clock, ``duration`` the seconds it ran,
    and ``worker`` the name of the worker that ran it; None where the pool
    cannot tell.
    """

    key: int
    shared: dict
    ret: Any
    excinfo: ExceptionInfo | None
    started: float | None = None
    duration: float | None = None
    worker: str | None = None


def check_count(name: str, value: Any, minimum: int) -> int:
    """Validate a worker/spare count, naming it in the error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PoolError(f"{name}={value!r}: expected an int >= {minimum}")
    return value


class AutoSpare:
    """The policy of ``spare="auto"``: pre-queue more while tasks are short.

    The pool starts with one spare. After each batch of outcomes the running
    mean of task durations says how many tasks fit in ``BUDGET`` seconds of
    work per worker; the spare count grows towards that (at most doubling
    per batch, so a burst of short tasks among long ones does not flood the
    queue) and falls to it at once when tasks get longer. It never goes
    below 1 nor above ``LIMIT`` per worker. Tasks of ``BUDGET`` or longer
    are long: the count is then exactly 1, as ``spare=1``. What the pool has
    queued beyond its workers is at most about ``BUDGET`` of work per
    worker: while the caller holds a result, that is all that goes on
    running.
    """

    BUDGET = 0.002  # seconds of pre-queued work per worker, at most
    LIMIT = 512  # spares per worker, at most
    WEIGHT = 0.25  # of a batch's mean duration in the running mean

    __slots__ = ("mean",)

    def __init__(self) -> None:
        self.mean: float | None = None  # seconds per task, running

    def next_spare(self, spare: int, workers: int, outcomes: list[Outcome]) -> int:
        """The spare count to use after *outcomes* came back."""
        total, n = 0.0, 0
        for outcome in outcomes:
            duration = outcome[5]
            if duration is not None:
                total += duration
                n += 1
        if not n:
            return spare
        batch = total / n
        mean = self.mean
        mean = batch if mean is None else mean + self.WEIGHT * (batch - mean)
        self.mean = mean
        if mean >= self.BUDGET:  # long tasks: exactly one spare
            return 1
        fits = int(self.BUDGET * workers / mean) if mean > 0 else self.LIMIT * workers
        target = max(1, min(fits, self.LIMIT * workers))
        return min(target, 2 * spare) if target > spare else target


class WorkerPool(abc.ABC):
    """Base class of pexen's pools: runs jobs somewhere and reports outcomes.

    ``workers`` is how many jobs run at once; ``spare`` how many more are
    queued so workers do not starve while the caller handles a result: an
    int, kept exactly, or ``"auto"`` (:class:`AutoSpare`), which starts at 1
    and follows the duration of the tasks. ``spare`` always reads as the
    count in force. ``workers`` may be set while a run goes on.
    """

    #: whether ``workers="auto"`` is offered (see ``AutoWorkers``)
    auto_workers_allowed = False

    def __init__(self, workers: int | str = 1, spare: int | str = "auto") -> None:
        self._active = False
        self.auto_workers: AutoWorkers | None = None
        if workers == "auto" and self.auto_workers_allowed:
            self.auto_workers = AutoWorkers(self.auto_workers_limit())
            self._workers = self.auto_workers.initial
        elif isinstance(workers, str):
            allowed = " or 'auto'" if self.auto_workers_allowed else ""
            raise PoolError(f"workers={workers!r}: expected an int >= 1{allowed}")
        else:
            self._workers = check_count("workers", workers, 1)
        self.auto_spare: AutoSpare | None = None
        if spare == "auto":
            self.auto_spare = AutoSpare()
            self.spare = 1
        else:
            if isinstance(spare, str):
                raise PoolError(f"spare={spare!r}: expected an int >= 0 or 'auto'")
            self.spare = check_count("spare", spare, 0)
        self._bridge: Bridge | None = None  # the run's thread, from an event loop

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(workers={self._workers_repr()}, "
            f"spare={self._spare_repr()})"
        )

    def _spare_repr(self) -> str:
        return "'auto'" if self.auto_spare is not None else str(self.spare)

    def _workers_repr(self) -> str:
        return "'auto'" if self.auto_workers is not None else str(self.workers)

    def auto_workers_limit(self) -> int:
        """The most workers ``workers="auto"`` may grow to (pools offering it)."""
        raise NotImplementedError

    @property
    def workers(self) -> int:
        """How many jobs run at once; set it to resize, also during a run.

        Growing starts workers at once; shrinking retires idle workers first
        and never stops a running task. Setting a count ends ``"auto"``.
        """
        return self._workers

    @workers.setter
    def workers(self, value: int) -> None:
        value = check_count("workers", value, 1)
        self.auto_workers = None
        self._set_workers(value)

    def _set_workers(self, value: int) -> None:
        """Resize to *value* workers (the policy of ``"auto"`` calls this too)."""
        old, self._workers = self._workers, value
        if self._active and value != old:
            self._resize(value, old)
            self.wake()  # the scheduler may hand out more (or fewer) jobs now

    def _resize(self, workers: int, old: int) -> None:
        """Start or retire workers to have *workers* (from *old*) during a run.

        Called from whichever thread set ``workers``. The default changes
        nothing but the count, that is how many jobs the scheduler hands out.
        """
        return None

    @property
    def capacity(self) -> int:
        """How many jobs the scheduler may have in flight at once."""
        return self._workers + self.spare

    def tune(self, outcomes: list[Outcome]) -> None:
        """Let ``spare="auto"`` learn from a batch of outcomes (else nothing)."""
        auto = self.auto_spare
        if auto is not None:
            self.spare = auto.next_spare(self.spare, self.workers, outcomes)

    def start(self) -> None:
        """Prepare to serve one run; refuse a second run at the same time.

        ``spare="auto"`` starts each run afresh, at 1.
        """
        self._claim()
        try:
            self._start()
        except BaseException:
            self._active = False  # it never served: the next run may try again
            raise

    def _claim(self) -> None:
        """Mark the pool as serving a run (refused if it is); reset ``"auto"``."""
        if self._active:
            raise PoolError(f"{self!r} is already serving a run")
        self._active = True
        if self.auto_spare is not None:
            self.auto_spare = AutoSpare()
            self.spare = 1
        if self.auto_workers is not None:
            self.auto_workers.restart()

    def stop(self, cancel: bool = False) -> None:
        """End the run: drop unstarted jobs if *cancel*, release every worker."""
        if not self._active:
            return
        try:
            self._stop(cancel)
        finally:
            self._active = False

    # -- the same run, driven from an event loop --------------------------------

    async def start_async(self) -> None:
        """``start()`` for a run driven from an event loop, which it never blocks.

        The default makes every call of the run (``start``, ``submit``,
        ``wait``, ``stop``) in a thread of its own, one at a time.
        """
        if self._active:
            raise PoolError(f"{self!r} is already serving a run")
        bridge = Bridge()
        try:
            await unstoppable(bridge.call(self.start))
        except BaseException:  # start failed, or we were cancelled meanwhile
            await unstoppable(self._end_bridge(bridge, cancel=True))
            raise
        self._bridge = bridge

    async def wait_async(self, jobs: Iterable[Job] = ()) -> list[Outcome]:
        """Submit *jobs*, then wait for outcomes as ``wait()`` does, loop unblocked.

        Cancelled while it waits, it wakes the pool (``wake()``): the wait
        ends soon in the run's thread, and what it returns is dropped, as
        leaving a ``for`` loop over ``Sched.run()`` drops what is not taken.
        """
        bridge = self._bridge
        if bridge is None:
            raise PoolError(f"{self!r} was not started by start_async()")
        try:
            return await bridge.call(self._submit_and_wait, list(jobs))
        except asyncio.CancelledError:
            self.wake()
            raise

    def _submit_and_wait(self, jobs: list[Job]) -> list[Outcome]:
        submit = self.submit
        for job in jobs:
            submit(job)
        return self.wait()

    async def stop_async(self, cancel: bool = False) -> None:
        """``stop()`` without blocking the loop; a cancellation meanwhile does
        not cut it short (it is raised once the pool has stopped)."""
        bridge, self._bridge = self._bridge, None
        if bridge is not None:
            await unstoppable(self._end_bridge(bridge, cancel))

    async def _end_bridge(self, bridge: Bridge, cancel: bool) -> None:
        """Stop the pool (after any call still running), then end the thread."""
        try:
            await bridge.call(self.stop, cancel)
        finally:
            await bridge.close()

    @abc.abstractmethod
    def submit(self, job: Job) -> None:
        """Hand one job to the pool (it may be buffered until ``wait``)."""

    @abc.abstractmethod
    def wait(self) -> list[Outcome]:
        """Block until at least one job is done; return every outcome ready.

        After ``wake()`` it may return early, with no outcome at all.
        """

    # -- driving a run live (defaults: the least a pool can do) ---------------

    def wake(self) -> None:
        """Make a blocking ``wait()`` return soon; from any thread, or a signal
        handler. Default: nothing (``wait()`` returns at the next outcome)."""
        return None

    def cancel(self, key: int, force: bool = False) -> bool:
        """Drop job *key* if it has not started: True, and no outcome comes.

        Else False: it runs on and reports its outcome; with *force* the pool
        stops it where it can, and the outcome carries ``TaskCancelledError``.
        Default: False.
        """
        return False

    def drop_queued(self) -> list[int]:
        """Drop every job not started; return their keys (no outcome comes).

        Default: ``[]``.
        """
        return []

    def running(self) -> dict[int, Running] | None:
        """The jobs running now: ``{key: (started, worker name or None)}``.

        ``started`` is a ``time.monotonic()``. None where the pool cannot
        tell a running job from a queued one (the default). From any thread.
        """
        return None

    @abc.abstractmethod
    def _start(self) -> None: ...

    @abc.abstractmethod
    def _stop(self, cancel: bool) -> None: ...


# -- helpers several pools share ----------------------------------------------


def timeout_grace(timeout: float) -> float:
    """How long after its ``timeout`` a pool steps in: 50 ms + 10%, at most 1 s.

    Every pool that enforces timeouts uses it, so they agree on when a task
    has overrun; the grace lets a task that watches its own time (a
    subprocess started with ``timeout=``) fail in its own words first.
    """
    return min(1.0, 0.05 + 0.1 * timeout)


def timeout_error(task: Any, timeout: float, what_then: str) -> TaskTimeoutError:
    """``task 'x' ran longer than its timeout of 2 s; <what_then>``.

    One wording for every pool; *what_then* says what the pool did about it
    (killed its worker, interrupted it, discards what it returns).
    """
    err = TaskTimeoutError(
        f"task {task_name(task)!r} ran longer than its timeout of {timeout:g} s"
        f"{what_then}"
    )
    err.timeout = timeout  # type: ignore[attr-defined]
    return err


def cancelled_error(task: Any, what_then: str) -> ExceptionInfo:
    """``task 'x' was cancelled while it ran; <what_then>``, with a traceback."""
    return raised(TaskCancelledError(
        f"task {task_name(task)!r} was cancelled while it ran{what_then}"
    ))


def raised(exc: BaseException, cause: BaseException | None = None) -> ExceptionInfo:
    """Raise *exc* here (chained to *cause*), so its ExceptionInfo has a traceback.

    Without a cause, a chain *exc* already has is kept, and nothing else is
    chained: an error a pool makes while handling another one
    (``queue.Empty``, say) is not about that one.
    """
    try:
        if cause is not None:
            raise exc from cause
        if exc.__cause__ is not None:
            raise exc
        raise exc from None
    except BaseException:
        return ExceptionInfo(*sys.exc_info())


@contextlib.contextmanager
def sigint_blocked(block: bool = True) -> Iterator[None]:
    """Block SIGINT in this thread meanwhile (threads and children inherit it).

    With *block* false, unblock it instead: a wait that a Ctrl-C may end,
    inside a stretch that keeps it out.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    how = signal.SIG_BLOCK if block else signal.SIG_UNBLOCK
    old = signal.pthread_sigmask(how, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def sigint_unblocked() -> contextlib.AbstractContextManager[None]:
    """Let SIGINT in, in this thread, meanwhile (see :func:`sigint_blocked`)."""
    return sigint_blocked(block=False)
