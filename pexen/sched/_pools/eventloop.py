"""``AsyncWorkerPool``: ``async def`` tasks as coroutines on an event loop.

Where the loop is
-----------------
Driven by ``Sched.run()`` (the blocking calls ``start``, ``submit``,
``wait``, ``stop``), the pool runs a private event loop in a thread of its
own, ``pexen-async-N``, made by ``asyncio.run`` at ``start()`` and closed at
``stop()`` as ``asyncio.run`` closes one: what tasks left on it is
cancelled. ``submit`` keeps jobs until ``wait`` hands them to the loop in one
call; outcomes come back through a queue ``wait`` blocks on. Driven from an
event loop (``Sched.arun``, ``pexen.amap``: ``start_async``,
``wait_async``, ``stop_async``), it runs the coroutines on that loop: no
thread at all, and no hand-over.

Jobs
----
At most ``workers`` jobs run at once, each as an asyncio task named after
its pexen task (``pexen: name``); the others wait in submission order. A
running job holds the lowest free of the numbered slots, which names its
worker (``pexen-async-N/S``): the jobs of one slot run one after the other,
as a thread pool's jobs on one thread, and a trace shows a track each. A
task that is ``async def`` at heart (a coroutine function, or a partial,
bound method, wrapper or callable object of one: ``is_coroutine_task``) is
called on the loop and its coroutine awaited there. Any other task is called
in a thread of its own, as ``asyncio.to_thread`` would (the context copied),
so that it cannot block the loop; a coroutine it returns is awaited on the
loop. These threads (``pexen-async-N.M``) are the pool's, not the loop's
default executor's: ``workers`` bounds them, ``stop()`` waits for them, and
as in ``ThreadWorkerPool`` the threads their tasks start are not daemons.

Timeouts
--------
A job's ``timeout`` counts from its start; at its end (plus the grace of
``timeout_grace``, as every pool) its coroutine is cancelled and its outcome
is ``TaskTimeoutError``, also when the coroutine catches the cancellation
and returns. A thread cannot be cancelled: a plain function past its time is
reported timed out all the same, and its thread runs on until the function
returns. ``stop()`` does not wait for such a thread (one ``stop()`` finds
past its time, too): it is abandoned, and a ``PoolWarning`` names it.

Driving a run live
------------------
``cancel`` and ``drop_queued`` act on the run's state in the loop's thread:
called from another (the thread driving ``Sched.run()``), they are handed
to the loop and their answer awaited. A queued job is dropped there and
then, as is one whose asyncio task has not taken its first step (made as
another job ended, before the scheduler heard of that end). ``cancel(key,
force=True)`` of a running job cancels its coroutine,
whose outcome is then ``TaskCancelledError`` (also if it catches the
cancellation and returns); a plain function's thread cannot be stopped: it
is abandoned (the end of the run does not wait for it) and its job's
outcome says so. ``running()`` reads a copy of the jobs started, from any
thread. Resizing starts queued jobs at once if there is room; shrinking
starts none until fewer run, and stops none.

Stopping
--------
``stop(cancel=True)`` drops the queued jobs, cancels the running coroutines
and waits until they have ended (a coroutine that ignores its cancellation
holds it up, as in ``asyncio.run``); threads running plain functions are
waited for, as ``ThreadWorkerPool`` waits for its threads. No outcome comes
for a job stopped so.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import heapq
import itertools
import sys
import threading
import time
import types
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from queue import SimpleQueue
from typing import Any, TypeVar

from pexen.sched._calling import (
    coroutine_traceback,
    is_coroutine_task,
    refuse_handed_on_generator,
)
from pexen.sched._errors import PoolError, PoolWarning
from pexen.sched._naming import task_name
from pexen.sched._pools.base import (
    Job,
    Outcome,
    Running,
    WorkerPool,
    cancelled_error,
    raised,
    timeout_error,
    timeout_grace,
)
from pexen.sched._pools.bridge import unstoppable
from pexen.sched._result import ExceptionInfo

_run_ids = itertools.count(1)
_new_tuple = tuple.__new__
_WAKE = object()  # in the outcomes of a run under Sched.run(): wake() was called
# where our warnings point: the caller's loop over ``Sched.run()``, which
# called stop, which called the method that warns
_USER = 5
_now = time.monotonic
T = TypeVar("T")


def _call_plain(job: Job) -> tuple[Any, ExceptionInfo | None]:
    """Call a job's task in this thread: what it returned, or what it raised
    (as ``execute`` does, a wrapper's generator handed on unrun is refused)."""
    _key, task, pass_shared, kwargs, shared, _timeout = job
    try:
        ret = task(shared, **kwargs) if pass_shared else task(**kwargs)
        if type(ret) is types.GeneratorType or type(ret) is types.AsyncGeneratorType:
            refuse_handed_on_generator(task, ret)
    except BaseException:
        return None, ExceptionInfo(*sys.exc_info())
    return ret, None


def _timeout_outcome(job: Job, started: float, elapsed: float | None,
                     in_thread: bool) -> Outcome:
    if in_thread:
        then = (
            "; a thread cannot be stopped, so it runs on until the task returns, "
            "and what it returns is discarded"
        )
    elif elapsed is None:
        then = "; it was cancelled"
    else:
        then = (f" and ignored its cancellation (it returned after {elapsed:.3g} s); "
                "what it returned is discarded")
    err = timeout_error(job.task, job.timeout, then)  # type: ignore[arg-type]
    return Outcome(job.key, job.shared, None, raised(err), started, _now() - started)


class _LoopRun:
    """One run's state, touched only in the loop's thread.

    What crosses threads is ``outcomes`` (a ``SimpleQueue``, under
    ``Sched.run()``) and what ``call_soon_threadsafe`` brings in: jobs,
    wake-ups, a plain function's end.
    """

    def __init__(self, pool: AsyncWorkerPool, run_id: int, threaded: bool) -> None:
        self.pool = pool
        self.run_id = run_id
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        self.threaded = threaded
        self.queued: deque[Job] = deque()
        self.running: dict[int, asyncio.Task] = {}
        self.started: dict[int, Running] = {}  # for running(), from any thread
        # the worker slots free below ``n_slots`` (lowest first): a job runs
        # in one, which names it as a worker thread names a thread pool's job
        self.free_slots: list[int] = []
        self.n_slots = 0
        self.expired: set[int] = set()  # cancelled for their timeout, not reported
        self.stopped: set[int] = set()  # cancelled by cancel(force=True)
        # stop(cancel=True), set from the stopping thread too: start no more
        # jobs, cancel the running ones
        self.cancelling = False
        # plain functions running in their threads: key -> (job, thread, deadline)
        self.threads: dict[int, tuple[Job, threading.Thread, float | None]] = {}
        self.thread_ended = asyncio.Event()
        self.ended_threads: list[threading.Thread] = []  # called back, to join
        self.given_up: list[threading.Thread] = []  # running a cancelled function
        self.n_threads = 0
        self.closed = asyncio.Event()  # under Sched.run(): the loop may end
        # under Sched.run(): outcomes for wait(), in another thread
        self.outcomes: SimpleQueue = SimpleQueue()
        # from a loop: outcomes for wait_async(), and what wakes it
        self.ready: list[Outcome] = []
        self.has_ready = asyncio.Event()
        self.woken = False

    def deliver(self, outcome: Outcome) -> None:
        if self.threaded:
            self.outcomes.put(outcome)
        else:
            self.ready.append(outcome)
            self.has_ready.set()

    def wake(self) -> None:
        self.woken = True
        self.has_ready.set()

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the loop's thread, from any thread; its answer."""
        if threading.get_ident() == self.loop_thread:
            return fn(*args)
        answer: concurrent.futures.Future = concurrent.futures.Future()

        def call() -> None:
            try:
                answer.set_result(fn(*args))
            except BaseException as exc:
                answer.set_exception(exc)

        self.loop.call_soon_threadsafe(call)
        return answer.result()

    def drop_queued(self) -> list[int]:
        dropped = [job.key for job in self.queued]
        self.queued.clear()
        return dropped

    def cancel(self, key: int, force: bool) -> bool:
        """Drop job *key* if queued (True); with *force* stop it if it runs."""
        for job in self.queued:
            if job.key == key:
                self.queued.remove(job)
                return True
        task = self.running.get(key)
        if task is None:
            return False  # done: its outcome is on its way
        if key not in self.started:  # its asyncio task has not begun: as queued
            del self.running[key]
            task.cancel()
            self.fill()
            return True
        if force and key not in self.stopped:
            self.stopped.add(key)
            task.cancel()
        return False

    def launch(self, jobs: list[Job]) -> None:
        """Queue *jobs*; start as many as ``workers`` allows."""
        self.queued.extend(jobs)
        self.fill()

    def fill(self) -> None:
        """Start queued jobs while fewer than ``workers`` run."""
        if self.cancelling:
            return
        queued, running, loop = self.queued, self.running, self.loop
        workers = self.pool.workers
        while queued and len(running) < workers:
            job = queued.popleft()
            running[job.key] = loop.create_task(
                self._run_job(job), name=f"pexen: {task_name(job.task)}"
            )

    def _take_slot(self) -> int:
        if self.free_slots:
            return heapq.heappop(self.free_slots)
        self.n_slots += 1
        return self.n_slots

    async def _run_job(self, job: Job) -> None:
        key, timeout = job.key, job.timeout
        timer = None
        started = _now()
        # taken here, not in fill(): a job cancelled before its first step
        # never gets here, nor to the end that gives its slot back
        slot = self._take_slot()
        worker = f"pexen-async-{self.run_id}/{slot}"
        self.started[key] = (started, worker)
        if timeout is not None:
            timer = self.loop.call_later(timeout + timeout_grace(timeout),
                                         self._expire, key)
        try:
            outcome = await self._call(job, started)
        except asyncio.CancelledError:
            if key in self.stopped:
                outcome = self._stopped_outcome(job, started)
            elif key in self.expired:
                outcome = _timeout_outcome(job, started, None, key in self.threads)
            else:
                raise  # the pool is stopping: no outcome
        else:  # if it was cancelled, it swallowed the cancellation
            if key in self.stopped:
                outcome = self._stopped_outcome(job, started)
            elif key in self.expired:
                outcome = _timeout_outcome(job, started, outcome.duration, False)
        finally:
            if timer is not None:
                timer.cancel()
            del self.running[key]
            del self.started[key]
            heapq.heappush(self.free_slots, slot)
        self.expired.discard(key)
        self.stopped.discard(key)
        self.deliver(_new_tuple(Outcome, (*outcome[:6], worker)))
        self.fill()

    def _stopped_outcome(self, job: Job, started: float) -> Outcome:
        """The outcome of a job stopped by ``cancel(force=True)``; a plain
        function's thread, which cannot be stopped, is abandoned."""
        entry = self.threads.pop(job.key, None)
        then = ""
        if entry is not None:
            thread = entry[1]
            self.given_up.append(thread)
            then = (f"; its thread {thread.name!r} cannot be stopped, so it was "
                    f"abandoned: it runs on until the task returns, and what it "
                    f"returns is discarded")
        return Outcome(job.key, job.shared, None, cancelled_error(job.task, then),
                       started, _now() - started)

    def _expire(self, key: int) -> None:
        task = self.running.get(key)
        if task is not None:
            self.expired.add(key)
            task.cancel()

    async def _call(self, job: Job, started: float) -> Outcome:
        key, task, pass_shared, kwargs, shared, _timeout = job
        coro = None
        try:
            if is_coroutine_task(task):
                ret = task(shared, **kwargs) if pass_shared else task(**kwargs)
            else:
                ret, excinfo = await self._in_thread(job)
                if excinfo is not None:
                    return Outcome(key, shared, None, excinfo, started,
                                   _now() - started)
            if type(ret) is types.CoroutineType:
                coro = ret
                ret = await coro
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError) and (
                self.cancelling or key in self.expired or key in self.stopped
            ):
                raise  # ours: see _run_job
            if isinstance(exc, KeyboardInterrupt) and (
                threading.current_thread() is threading.main_thread()
            ):
                raise  # Ctrl-C in the program's own loop stops the run
            tb = exc.__traceback__
            if coro is not None:
                tb = coroutine_traceback(exc, coro) or tb
            excinfo = ExceptionInfo(type(exc), exc, tb)
            return Outcome(key, shared, None, excinfo, started, _now() - started)
        return Outcome(key, shared, ret, None, started, _now() - started)

    def _in_thread(self, job: Job) -> asyncio.Future:
        """Call a plain function in a thread of its own; a future of its answer."""
        future = self.loop.create_future()
        context = contextvars.copy_context()
        self.n_threads += 1
        thread = threading.Thread(
            target=self._work,
            args=(job, future, context),
            name=f"pexen-async-{self.run_id}.{self.n_threads}",
            daemon=True,  # to the interpreter: see ThreadWorkerPool, "Daemon or not"
        )
        timeout = job.timeout
        deadline = (None if timeout is None
                    else _now() + timeout + timeout_grace(timeout))
        self.threads[job.key] = (job, thread, deadline)
        thread.start()
        return future

    def _work(self, job: Job, future: asyncio.Future,
              context: contextvars.Context) -> None:
        """A plain function's thread: call it, hand the answer to the loop."""
        # threads the task starts inherit this: not daemons, as in a plain program
        threading.current_thread()._daemonic = False  # type: ignore[attr-defined]
        answer = context.run(_call_plain, job)
        # a closed loop raises RuntimeError: the run is long over
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._thread_done, job.key, future, answer)

    def _thread_done(self, key: int, future: asyncio.Future, answer: tuple) -> None:
        entry = self.threads.pop(key, None)
        if entry is not None:  # else abandoned at the end of the run: let it go
            self.ended_threads.append(entry[1])
        if not future.done():
            future.set_result(answer)
        self.thread_ended.set()

    async def shutdown(self, cancel: bool) -> list[tuple[Job, threading.Thread]]:
        """End the run; return the threads abandoned (past their timeout).

        With *cancel*, queued jobs are dropped and running ones cancelled;
        else they all run to their end (their outcomes unread).
        """
        if cancel:
            self.cancelling = True
            self.queued.clear()
            for task in list(self.running.values()):
                task.cancel()
        while self.running:
            await asyncio.wait(list(self.running.values()))
        while True:
            now = _now()
            waited = [
                deadline for _job, _thread, deadline in self.threads.values()
                if deadline is None or deadline > now
            ]
            if not waited:
                break
            self.thread_ended.clear()
            deadlines = [d for d in waited if d is not None]
            # until a thread ends, or (all of them timed) the first deadline
            timeout = None if len(deadlines) < len(waited) else min(deadlines) - now
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.thread_ended.wait(), timeout)
        abandoned = [(job, thread) for job, thread, _deadline in self.threads.values()]
        for thread in [*(thread for _job, thread in abandoned), *self.given_up]:
            # neither we nor the interpreter wait for it
            thread._daemonic = True  # type: ignore[attr-defined]
        self.threads.clear()
        self.given_up.clear()
        # each called back as its last act: joining it holds the loop for no
        # time worth naming, and no thread of the run outlives its end
        for thread in self.ended_threads:
            thread.join()
        self.ended_threads.clear()
        self.closed.set()
        return abandoned


class AsyncWorkerPool(WorkerPool):
    """Run ``async def`` tasks as coroutines on an event loop, ``workers`` at once.

    Under ``Sched.run()`` on a private loop in a thread of its own; under
    ``Sched.arun()`` and ``pexen.amap`` on the caller's loop. A ``timeout``
    cancels the coroutine. Other tasks run in a thread each, never blocking
    the loop. Leaving a run early cancels the running coroutines.
    """

    def __init__(self, workers: int = 1, spare: int | str = "auto") -> None:
        super().__init__(workers, spare)
        self._run: _LoopRun | None = None
        self._thread: threading.Thread | None = None  # the private loop's
        self._buffer: list[Job] = []  # submitted, not yet handed to the loop

    def submit(self, job: Job) -> None:
        self._buffer.append(job)

    def _take_buffer(self) -> list[Job]:
        jobs, self._buffer = self._buffer, []
        return jobs

    # -- driving a run live (see "Driving a run live") ---------------------------

    def wake(self) -> None:
        run = self._run
        if run is None:
            return
        if run.threaded:
            run.outcomes.put(_WAKE)  # SimpleQueue.put: safe in a signal handler
        else:
            with contextlib.suppress(RuntimeError):  # its loop is closed: no wait
                run.loop.call_soon_threadsafe(run.wake)

    def cancel(self, key: int, force: bool = False) -> bool:
        for job in self._buffer:  # submitted, not yet handed to the loop
            if job.key == key:
                self._buffer.remove(job)
                return True
        run = self._run
        return False if run is None else run.call(run.cancel, key, force)

    def drop_queued(self) -> list[int]:
        dropped = [job.key for job in self._take_buffer()]
        run = self._run
        if run is not None:
            dropped += run.call(run.drop_queued)
        return dropped

    def running(self) -> dict[int, Running] | None:
        run = self._run
        return {} if run is None else dict(run.started)

    def _resize(self, workers: int, old: int) -> None:
        run = self._run
        if run is not None and workers > old:  # room for queued jobs
            with contextlib.suppress(RuntimeError):  # its loop is closed: no run
                run.loop.call_soon_threadsafe(run.fill)

    # -- under Sched.run(): a private loop in a thread ---------------------------

    def _start(self) -> None:
        self._buffer = []
        run_id = next(_run_ids)
        box: list[_LoopRun] = []
        ready = threading.Event()
        thread = threading.Thread(
            target=self._serve, args=(run_id, box, ready),
            name=f"pexen-async-{run_id}", daemon=True,
        )
        thread.start()
        ready.wait()
        if not box:  # asyncio.run failed before the loop ran
            thread.join()
            raise PoolError(f"{self!r} could not start its event loop")
        self._run, self._thread = box[0], thread

    def _serve(self, run_id: int, box: list[_LoopRun],
               ready: threading.Event) -> None:
        """The private loop's thread: serve one run until ``stop()`` ends it."""
        # threads started on this loop inherit this: see ThreadWorkerPool
        threading.current_thread()._daemonic = False  # type: ignore[attr-defined]

        async def serve() -> None:
            run = _LoopRun(self, run_id, threaded=True)
            box.append(run)
            ready.set()
            await run.closed.wait()

        try:
            asyncio.run(serve())
        finally:
            ready.set()

    def wait(self) -> list[Outcome]:
        run = self._run
        if run is None or not run.threaded:
            raise PoolError(f"{self!r} was not started by start()")
        jobs = self._take_buffer()
        if jobs:
            run.loop.call_soon_threadsafe(run.launch, jobs)
        outcomes = run.outcomes
        item = outcomes.get()
        ready = [] if item is _WAKE else [item]
        while not outcomes.empty():
            item = outcomes.get()
            if item is not _WAKE:
                ready.append(item)
        return ready

    def _stop(self, cancel: bool) -> None:
        run, thread = self._run, self._thread
        if run is not None and not run.threaded:  # it must be awaited
            raise PoolError(
                f"{self!r} serves a run started by start_async(), on an event "
                "loop: stop it there, with await pool.stop_async()"
            )
        self._run, self._thread, self._buffer = None, None, []
        if run is None:
            return
        # start no job from now on, even one queued behind a job that ends
        # before the loop gets to the shutdown (a bool, read by the loop)
        run.cancelling = cancel
        abandoned = self._await_shutdown(run, cancel)
        if thread is not None:
            thread.join()
        if abandoned:
            self._warn_abandoned(abandoned)

    def _await_shutdown(
        self, run: _LoopRun, cancel: bool
    ) -> list[tuple[Job, threading.Thread]]:
        """Have the loop end the run; wait for it; the threads it abandoned."""
        return asyncio.run_coroutine_threadsafe(run.shutdown(cancel), run.loop).result()

    # -- from an event loop: on the caller's loop ---------------------------------

    async def start_async(self) -> None:
        self._claim()
        self._buffer = []
        self._run = _LoopRun(self, next(_run_ids), threaded=False)

    async def wait_async(self, jobs: Iterable[Job] = ()) -> list[Outcome]:
        run = self._run
        if run is None or run.threaded:
            raise PoolError(f"{self!r} was not started by start_async()")
        new = self._take_buffer()
        new.extend(jobs)
        if new:
            run.launch(new)
        if not run.ready and not run.woken:
            await run.has_ready.wait()
        run.has_ready.clear()
        run.woken = False
        ready, run.ready = run.ready, []
        return ready

    async def stop_async(self, cancel: bool = False) -> None:
        run = self._run
        if run is None or run.threaded:
            self.stop(cancel)
            return
        self._run, self._buffer = None, []
        try:
            abandoned = await unstoppable(run.shutdown(cancel))
        finally:
            self._active = False
        if abandoned:
            self._warn_abandoned(abandoned)

    def _warn_abandoned(self, abandoned: list[tuple[Job, threading.Thread]]) -> None:
        listed = ", ".join(
            f"task {task_name(job.task)!r} (timeout {job.timeout:g} s) in thread "
            f"{thread.name!r}"
            for job, thread in abandoned
        )
        n = len(abandoned)
        warnings.warn(
            f"{self!r} abandons {n} thread{'s' if n != 1 else ''} still running a "
            f"plain (not async) function that overran its timeout: {listed}. A "
            "thread cannot be stopped: it runs on until its function returns, and "
            "neither the end of the run nor the interpreter's exit waits for it. "
            "Make the task async def (a timeout cancels a coroutine), or run it in "
            "a ProcessWorkerPool, which kills it",
            PoolWarning,
            stacklevel=_USER,
        )
