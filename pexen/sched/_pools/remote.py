"""Pools that hand jobs to an executor: any ``concurrent.futures``-style one.

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
   exception with its traceback (``_transport``). The task itself never comes
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
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import BrokenExecutor, CancelledError
from queue import SimpleQueue
from typing import Any

from pexen.sched._calling import execute
from pexen.sched._errors import PoolError, TaskTimeoutError, WorkerCrashError
from pexen.sched._naming import task_name
from pexen.sched._pools.base import Job, Outcome, WorkerPool
from pexen.sched._pools.thread import _timeout_outcome as timeout_outcome
from pexen.sched._pools.transport import (
    TransportError,
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


def run_job(task_blob: bytes, data_blob: bytes) -> tuple[bytes | None, bytes | None]:
    """Run one pickled job in a worker; return ``(excinfo_blob, data_blob)``.

    On success ``excinfo_blob`` is None and ``data_blob`` holds
    ``(shared, ret)``; on failure ``data_blob`` holds the shared dict, or is
    None when that cannot be pickled. Never raises for what a task does.
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
        return dumps_excinfo(ExceptionInfo(*sys.exc_info())), None
    job = (None, task, pass_shared, kwargs, shared, timeout)
    start = time.monotonic()
    try:
        with _alarm(task, timeout):
            _key, shared, ret, excinfo = execute(job)
    except (KeyboardInterrupt, TaskTimeoutError):  # in the worker's main thread
        ret, excinfo = None, ExceptionInfo(*sys.exc_info())
    interrupted = excinfo is not None and isinstance(excinfo.val, TaskTimeoutError)
    if timeout is not None and not interrupted:
        elapsed = time.monotonic() - start
        if elapsed > timeout:  # in a thread, which could not be interrupted
            ret, excinfo = None, timeout_outcome(job, elapsed)[3]
    if excinfo is None:
        try:
            return None, dumps_value((shared, ret), "outcome")
        except TransportError:
            excinfo = unpicklable(
                task, "cannot be sent back", (ret, "ret", "return value"),
                (shared, "shared", "shared dict"),
            )
    try:
        data = dumps_value(shared, "shared dict")
    except TransportError:
        data = None
    return dumps_excinfo(excinfo), data


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
        err = TaskTimeoutError(
            f"task {task_name(task)!r} ran longer than its timeout of {timeout:g} "
            f"s; it was interrupted"
        )
        err.timeout = timeout  # type: ignore[attr-defined]
        raise err

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


def raised(exc: BaseException, cause: BaseException | None = None) -> ExceptionInfo:
    """Raise *exc* (chained to *cause*) here, so it carries a real traceback."""
    if cause is not None:
        exc.__cause__ = cause
    try:
        raise exc
    except BaseException:
        return ExceptionInfo(*sys.exc_info())


def executor_workers(executor: Any) -> int:
    """How many jobs *executor* runs at once, where it says so; else 1."""
    for attr in ("num_workers", "_max_workers"):  # mpi4py; stdlib and loky
        value = getattr(executor, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
    return 1


class RemotePool(WorkerPool):
    """What every executor-backed pool shares: packing jobs, rebuilding outcomes.

    Jobs go to ``executor`` (set by the subclass); a pool on another kind of
    engine overrides how jobs are submitted (``_submit_remote``) and, if its
    futures are not ``concurrent.futures`` ones, how finished ones are
    collected (``_track``, ``_collect``).
    """

    crash_types: tuple[type[BaseException], ...] = (BrokenExecutor,)
    executor: Any = None

    def __init__(self, workers: int = 1, spare: int = 1) -> None:
        super().__init__(workers, spare)
        self._pending: dict[Any, tuple[int, Any, dict]] = {}  # future -> job
        self._outbox: list[tuple] = []  # packed jobs that wait() sends in one go
        self._unsent: list[Outcome] = []  # jobs that failed before leaving
        self._done: SimpleQueue = SimpleQueue()
        self._broken: str | None = None  # why the executor takes no more jobs
        self._broken_cause: BaseException | None = None

    def _refused(self, key: Any, task: Any, shared: dict) -> Outcome:
        """The outcome of a job not sent because the executor refused work."""
        return key, shared, None, raised(
            PoolError(f"task {task_name(task)!r} was not run: {self._broken}"),
            self._broken_cause,
        )

    def submit(self, job: Job) -> None:
        key, task, pass_shared, kwargs, shared, timeout = job
        if self._broken is not None:
            self._unsent.append(self._refused(key, task, shared))
            return
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
            self._unsent.append((key, shared, None, excinfo))
            return
        self._outbox.append((key, task, shared, task_blob, data_blob))

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
        futures = self._submit_remote([(t, d) for _k, _t, _s, t, d in outbox])
        pending, taken = self._pending, len(futures)
        for future, (key, task, shared, _tb, _db) in zip(
            futures, outbox[:taken], strict=True
        ):
            pending[future] = (key, task, shared)
        for key, task, shared, _tb, _db in outbox[taken:]:  # refused
            self._unsent.append(self._refused(key, task, shared))
        self._track(futures)

    def _submit_remote(self, blobs: list[tuple[bytes, bytes]]) -> list[Any]:
        """Start ``run_job(task_blob, data_blob)`` for each pair; return the futures.

        When the executor refuses one (broken, shut down), the futures of the
        pairs before it are returned, ``_broken`` says why, and no more pairs
        are offered: the refused job and all later ones of the run fail alone.
        The jobs it took stay its own to finish or fail.
        """
        submit, futures = self.executor.submit, []
        for task_blob, data_blob in blobs:
            try:
                futures.append(submit(run_job, task_blob, data_blob))
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
        """Block until a future is done; return ``(future, value, error)`` of each."""
        done = [self._done.get()]
        while not self._done.empty():
            done.append(self._done.get())
        collected: list[Done] = []
        for future in done:
            try:
                collected.append((future, future.result(), None))
            except Exception as exc:  # CancelledError too
                collected.append((future, None, exc))
        return collected

    def _outcome(self, future: Any, value: Any, error: BaseException | None) -> Outcome:
        key, task, shared = self._pending.pop(future)
        if error is not None:
            return key, shared, None, self._failure(error, task)
        excinfo_blob, data_blob = value
        data: Any = None
        try:
            if data_blob is not None:
                data = loads(data_blob)
        except Exception:
            what = f"the outcome of task {task_name(task)!r}"
            try:  # again, for the error that names the task
                data = loads_value(data_blob, what)
            except TransportError:
                return key, shared, None, ExceptionInfo(*sys.exc_info())
        if excinfo_blob is None:
            shared, ret = data
            return key, shared, ret, None
        if data is not None:
            shared = data
        return key, shared, None, loads_excinfo(excinfo_blob)

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


class ExecutorWorkerPool(RemotePool):
    """Run tasks on a ``concurrent.futures``-style executor that you own.

    *executor* needs ``submit(fn, *args)`` returning a future with
    ``add_done_callback()`` and ``result()``: ``concurrent.futures`` thread and
    process pools, loky, ``mpi4py.futures.MPIPoolExecutor`` and the like.
    ``workers`` defaults to what the executor reports (``_max_workers``,
    ``num_workers``), else 1. Tasks and data travel pickled (lambdas,
    closures and functions of ``__main__`` by value) through a module-level
    function, so the executor's workers need pexen installed; even a thread
    executor gets copies (use ``ThreadWorkerPool`` to share objects). The
    pool never shuts the executor down; leaving a run early cancels the jobs
    that have not started. A broken executor (``BrokenExecutor``, say a
    worker process that died) fails every task it held, running or queued,
    with ``WorkerCrashError``: it cannot tell which one broke it. Once the
    executor refuses a task (broken, shut down), that task and every later
    one of the run fail with ``PoolError`` without being sent; the run goes
    on, and ends normally. A task past its ``timeout`` fails with
    ``TaskTimeoutError``: interrupted in a worker process's main thread,
    reported when it returns in a thread.
    """

    def __init__(
        self, executor: Any, workers: int | None = None, spare: int = 1
    ) -> None:
        if not callable(getattr(executor, "submit", None)):
            raise PoolError(
                f"executor={executor!r}: expected an object with a "
                f"submit(fn, *args) method, like concurrent.futures.Executor"
            )
        super().__init__(
            executor_workers(executor) if workers is None else workers, spare
        )
        self.executor = executor

    def __repr__(self) -> str:
        return (
            f"ExecutorWorkerPool({self.executor!r}, workers={self.workers}, "
            f"spare={self.spare})"
        )
