"""The base of the pools that run jobs on an engine's executor.

``RemotePool`` serves ``ExecutorWorkerPool`` (any ``concurrent.futures``-style
executor), ``DaskWorkerPool`` and ``MPIWorkerPool`` alike.

Design
------
Planning stays in the scheduler; an executor only runs jobs, in threads,
processes, on Dask workers or MPI ranks. The same three steps serve them all:

1. *Parent* (``submit``): :mod:`pexen.sched._pools.transport` pickles the task (by
   reference where it can, else by value with cloudpickle) and its data
   (``pass_shared``, ``kwargs``, ``shared``). ``wait`` hands the executor the
   module-level :func:`run_job` and two byte strings per job, so its own
   serializer (pickle, Dask's, mpi4py's) only ever moves bytes and a function
   it finds by name. A job that cannot be pickled fails alone, with a
   ``TransportError`` naming the part to blame.
2. *Worker* (:func:`run_job`): unpickle, run with ``execute``, and send back
   ``(excinfo_blob, data_blob)``: the shared dict and return value, or the
   exception with its traceback (``transport``). The task itself never comes
   back.
3. *Parent* (``wait``): the outcome ``(key, shared, ret, excinfo)`` is
   rebuilt; the scheduler finds the task by ``key``, so ``TaskRes.task`` is
   the very object the user added.

A failure of the executor rather than the task (a worker that died, a broken
pool, a cancelled future) fails the one job whose future carries it: the
types in ``crash_types`` become :class:`WorkerCrashError`. A broken executor
(``BrokenExecutor``) fails every job it holds, running or queued, and cannot
say which one broke it, so the message blames none. Once the executor refuses
a job (broken, or shut down), the pool stops offering it any: that job and
every later one of the run fail alone with ``PoolError``, and the run goes on
to its end.

A job's ``timeout`` is kept by the worker: where the task runs in the main
thread of its process (process executors, MPI ranks) an alarm signal
interrupts it with ``TaskTimeoutError``; in a worker's thread (Dask, thread
executors) nothing can stop it, so an overrun is reported when it returns.

Driving a run live: ``wake`` puts a marker in the queue ``wait`` blocks on;
``cancel``/``drop_queued`` drop a job still in the outbox, or whose future the
engine cancels before it started (``_drop``). An engine cannot stop a
running job: with ``force`` the pool abandons it where it may
(``abandons``: the job then fails at once with ``TaskCancelledError``, and
what it returns later is ignored), else it runs to its end.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import BrokenExecutor, CancelledError
from queue import SimpleQueue
from typing import Any, NamedTuple

from pexen.sched._calling import execute
from pexen.sched._errors import (
    PoolError,
    TaskTimeoutError,
    TransportError,
    WorkerCrashError,
)
from pexen.sched._naming import task_name
from pexen.sched._pools.base import (
    Job,
    Outcome,
    WorkerPool,
    cancelled_error,
    raised,
    timeout_error,
)
from pexen.sched._pools.transport import (
    dumps_excinfo,
    dumps_task,
    dumps_value,
    loads,
    loads_excinfo,
    loads_value,
)
from pexen.sched._result import ExceptionInfo

# what ``_collect`` reports of a finished future: (future, value, error)
Done = tuple[Any, Any, "BaseException | None"]
WAKE = object()  # put in the queue of done futures by wake()


class Packed(NamedTuple):
    """A job pickled for the executor, waiting in the outbox to be sent."""

    job: Job
    task_blob: bytes
    data_blob: bytes


def run_job(
    task_blob: bytes, data_blob: bytes
) -> tuple[bytes | None, bytes | None, float | None]:
    """Run one pickled job in a worker; return ``(excinfo_blob, data_blob, ran)``.

    On success ``excinfo_blob`` is None and ``data_blob`` holds
    ``(shared, ret)``; on failure ``data_blob`` holds the shared dict, or is
    None when that cannot be pickled. ``ran`` is how many seconds the task
    ran (None if it never started). Never raises for what a task does.
    """
    try:
        try:
            task = loads(task_blob)
            pass_shared, kwargs, shared, timeout = loads(data_blob)
        except Exception as exc:
            raise TransportError(
                f"the task cannot be unpickled in the worker ({exc}); pexen and "
                f"the modules the task comes from must be importable there"
            ) from exc
    except TransportError:
        return dumps_excinfo(ExceptionInfo(*sys.exc_info())), None, None
    job = Job(-1, task, pass_shared, kwargs, shared, timeout)
    start = time.monotonic()
    try:
        with _alarm(task, timeout):
            _key, shared, ret, excinfo, _started, _duration, _worker = execute(job)
    except (KeyboardInterrupt, TaskTimeoutError):  # in the worker's main thread
        ret, excinfo = None, ExceptionInfo(*sys.exc_info())
    elapsed = time.monotonic() - start
    interrupted = excinfo is not None and isinstance(excinfo.val, TaskTimeoutError)
    if timeout is not None and not interrupted and elapsed > timeout:
        # in a thread, which could not be interrupted
        ret, excinfo = None, raised(timeout_error(
            task, timeout,
            f" (it returned after {elapsed:.3g} s); what it returned is discarded",
        ))
    if excinfo is None:
        try:
            return None, dumps_value((shared, ret), "outcome"), elapsed
        except TransportError:
            excinfo = unpicklable(
                task, "cannot be sent back", (ret, "ret", "return value"),
                (shared, "shared", "shared dict"),
            )
    try:
        data = dumps_value(shared, "shared dict")
    except TransportError:
        data = None
    return dumps_excinfo(excinfo), data, elapsed


@contextlib.contextmanager
def _alarm(task: Any, timeout: float | None) -> Iterator[None]:
    """Interrupt the task with TaskTimeoutError after *timeout* seconds.

    Only where a signal can do it: in the main thread of a worker process (a
    process executor's, an MPI rank). Elsewhere ``run_job`` can only report
    the overrun once the task returns.
    """
    if (
        timeout is None
        or not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return

    def on_alarm(_signum: int, _frame: Any) -> None:
        raise timeout_error(task, timeout, "; it was interrupted")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def unpicklable(task: Any, verb: str, *parts: tuple[Any, str, str]) -> ExceptionInfo:
    """Pickle each ``(value, root, what)`` of *task* alone; return the first failure.

    Jobs and outcomes travel as one pickle; when that fails, this finds the
    part to blame, so the message names it and the path to its culprit.
    """
    name = task_name(task)
    for value, root, what in parts:
        try:
            dumps_value(value, f"{what} of task {name!r} {verb}", root)
        except TransportError:
            return ExceptionInfo(*sys.exc_info())
    return raised(TransportError(f"the job of task {name!r} {verb}"))


class RemotePool(WorkerPool):
    """What every executor-backed pool shares: packing jobs, rebuilding outcomes.

    Jobs go to ``executor`` (set by the subclass); a pool on another kind of
    engine overrides how jobs are submitted (``_submit_remote``) and, if its
    futures are not ``concurrent.futures`` ones, how finished ones are
    collected (``_track``, ``_collect``).
    """

    crash_types: tuple[type[BaseException], ...] = (BrokenExecutor,)
    executor: Any = None
    #: the module-level function the engine runs on each job's two blobs
    job_runner: Callable[[bytes, bytes], Any] = staticmethod(run_job)
    #: whether a running job may be left to run on when it is cancelled with
    #: ``force`` (its result is then ignored); else it is waited for
    abandons = True

    def __init__(self, workers: int = 1, spare: int | str = "auto") -> None:
        super().__init__(workers, spare)
        self._pending: dict[Any, Job] = {}  # future -> its job
        self._outbox: list[Packed] = []  # jobs that wait() sends in one go
        self._unsent: list[Outcome] = []  # jobs that failed before leaving
        self._done: SimpleQueue = SimpleQueue()
        self._broken: str | None = None  # why the executor takes no more jobs
        self._broken_cause: BaseException | None = None

    def _refused(self, job: Job) -> Outcome:
        """The outcome of a job not sent because the executor refused work."""
        return Outcome(job.key, job.shared, None, raised(
            PoolError(f"task {task_name(job.task)!r} was not run: {self._broken}"),
            self._broken_cause,
        ))

    def submit(self, job: Job) -> None:
        if self._broken is not None:
            self._unsent.append(self._refused(job))
            return
        key, task, pass_shared, kwargs, shared, timeout = job
        try:
            task_blob = dumps_task(task)
            data_blob = dumps_value((pass_shared, kwargs, shared, timeout), "job")
        except TransportError:
            try:
                dumps_task(task, task_name(task))
            except TransportError:
                excinfo = ExceptionInfo(*sys.exc_info())
            else:
                excinfo = unpicklable(
                    task, "cannot be sent to a worker",
                    (kwargs, "kwargs", "kwargs"), (shared, "shared", "shared dict"),
                )
            self._unsent.append(Outcome(key, shared, None, excinfo))
            return
        self._outbox.append(Packed(job, task_blob, data_blob))

    def wait(self) -> list[Outcome]:
        if self._outbox:
            self._flush()
        if self._unsent:
            ready, self._unsent = self._unsent, []
            return ready
        return [self._outcome(*done) for done in self._collect()]

    def _flush(self) -> None:
        """Send the buffered jobs, in one go where the engine can."""
        outbox, self._outbox = self._outbox, []
        futures = self._submit_remote([(p.task_blob, p.data_blob) for p in outbox])
        pending, taken = self._pending, len(futures)
        for future, packed in zip(futures, outbox[:taken], strict=True):
            pending[future] = packed.job
        for packed in outbox[taken:]:  # refused
            self._unsent.append(self._refused(packed.job))
        self._track(futures)

    def _submit_remote(self, blobs: list[tuple[bytes, bytes]]) -> list[Any]:
        """Start ``run_job(task_blob, data_blob)`` for each pair; return the futures.

        When the executor refuses one (broken, shut down), the futures of the
        pairs before it are returned, ``_broken`` says why, and no more pairs
        are offered: the refused job and all later ones of the run fail alone.
        The jobs it took stay its own to finish or fail.
        """
        submit, runner, futures = self.executor.submit, self.job_runner, []
        for task_blob, data_blob in blobs:
            try:
                futures.append(submit(runner, task_blob, data_blob))
            except Exception as exc:
                detail = type(exc).__name__ + (f": {exc}" if str(exc) else "")
                if isinstance(exc, BrokenExecutor):
                    self._broken = (
                        f"the executor broke earlier in the run ({detail}) and "
                        f"takes no new tasks"
                    )
                else:
                    self._broken = (
                        f"{self.executor!r} refused a task ({detail}); was it "
                        f"shut down?"
                    )
                self._broken_cause = exc
                break
        return futures

    def _track(self, futures: list[Any]) -> None:
        put = self._done.put
        for future in futures:
            future.add_done_callback(put)

    def _collect(self) -> list[Done]:
        """Block until a future is done (or ``wake``); return ``(future, value,
        error)`` of each, leaving out the futures of jobs dropped meanwhile."""
        done = [self._done.get()]
        while not self._done.empty():
            done.append(self._done.get())
        collected: list[Done] = []
        pending = self._pending
        for future in done:
            if future is WAKE or future not in pending:
                continue
            try:
                collected.append((future, future.result(), None))
            except Exception as exc:  # CancelledError too
                collected.append((future, None, exc))
        return collected

    # -- driving a run live ---------------------------------------------------

    def wake(self) -> None:
        self._done.put(WAKE)  # SimpleQueue.put: safe in a signal handler

    def cancel(self, key: int, force: bool = False) -> bool:
        for i, packed in enumerate(self._outbox):
            if packed.job.key == key:
                del self._outbox[i]
                return True
        for future, job in list(self._pending.items()):
            if job.key == key:
                if self._drop([future]):
                    return True
                if force and self.abandons:
                    self._abandon(future)
                return False
        return False

    def drop_queued(self) -> list[int]:
        dropped = [packed.job.key for packed in self._outbox]
        self._outbox.clear()
        return dropped + [job.key for job in self._drop(list(self._pending))]

    def _drop(self, futures: list[Any]) -> list[Job]:
        """Cancel those of *futures* that have not started; forget and return
        their jobs."""
        return [self._pending.pop(future) for future in futures if future.cancel()]

    def _abandon(self, future: Any) -> None:
        """Fail a running job at once; what it returns later is ignored."""
        job = self._pending.pop(future)
        self._unsent.append(Outcome(job.key, job.shared, None, cancelled_error(
            job.task, f"; {self._abandon_words}"
        )))
        self.wake()

    _abandon_words = (
        "the executor cannot stop a running task, so it was abandoned: it may "
        "run on, and what it returns is ignored"
    )

    def _outcome(self, future: Any, value: Any, error: BaseException | None) -> Outcome:
        key, task, _pass_shared, _kwargs, shared, _timeout = self._pending.pop(future)
        if error is not None:
            return Outcome(key, shared, None, self._failure(error, task))
        excinfo_blob, data_blob, ran = value
        data: Any = None
        try:
            if data_blob is not None:
                data = loads(data_blob)
        except Exception:
            what = f"the outcome of task {task_name(task)!r}"
            try:  # again, for the error that names the task
                data = loads_value(data_blob, what)
            except TransportError:
                return Outcome(key, shared, None, ExceptionInfo(*sys.exc_info()))
        if excinfo_blob is None:
            shared, ret = data
            return Outcome(key, shared, ret, None, None, ran)
        if data is not None:
            shared = data
        return Outcome(key, shared, None, loads_excinfo(excinfo_blob), None, ran)

    def _failure(self, error: BaseException, task: Any) -> ExceptionInfo:
        """Turn the executor's own failure for *task* into its ExceptionInfo."""
        detail = type(error).__name__ + (f": {error}" if str(error) else "")
        if isinstance(error, BrokenExecutor):
            return raised(WorkerCrashError(
                f"the executor broke while task {task_name(task)!r} was running "
                f"or queued ({detail}); a broken executor fails every task it "
                f"holds and cannot tell which one broke it, so this task may "
                f"be innocent"
            ), error)
        if isinstance(error, self.crash_types):
            return raised(WorkerCrashError(
                f"the worker running task {task_name(task)!r} died ({detail})"
            ), error)
        if isinstance(error, CancelledError):
            return raised(PoolError(
                f"task {task_name(task)!r} was cancelled in the executor before "
                f"it finished ({detail})"
            ), error)
        return raised(error)

    def _start(self) -> None:
        self._pending.clear()
        self._outbox.clear()
        self._unsent.clear()
        self._done = SimpleQueue()
        self._broken = self._broken_cause = None  # a new run tries again

    def _stop(self, cancel: bool) -> None:
        futures = list(self._pending)
        self._pending.clear()
        self._outbox.clear()
        self._unsent.clear()
        self._done = SimpleQueue()  # callbacks of old futures go to the old one
        self._broken = self._broken_cause = None
        if cancel:
            for future in futures:
                future.cancel()  # jobs not started yet; running ones finish
