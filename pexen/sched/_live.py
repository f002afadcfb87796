"""A run in progress: the scheduler loop, and the calls that drive it live.

Design
======

Threads
-------
One ``LiveRun`` per run, made by ``Sched.run()`` (or ``arun()``). Its loop
(``drive``) runs in the thread that iterates over that generator,
*the driving thread*, and it alone touches the planner and calls the pool
(but ``wake``, ``running`` and setting ``workers``, which pools make safe
from any thread). Everything else reaches it through a mailbox:

* ``add_tasks``, ``pause``, ``resume``, ``abort``, ``cancel`` and
  ``resize`` may be called from any thread, from a signal handler (pause,
  resume, abort), from an observer or from the loop body. They put a command
  in ``commands`` (a ``SimpleQueue``: its ``put`` is reentrant, so a signal
  handler may call it) and call ``pool.wake()``, which makes a blocking
  ``wait()`` return early; they take no lock a signal could deadlock on.
* The loop looks at the mailbox once per batch (one ``empty()`` call) and
  applies what it finds, in order.
* ``add_tasks`` checks the new tasks at once, in the caller's thread, against
  what the run provides (``provided``, kept under ``add_lock``), so that a
  bad graph raises from ``add_tasks`` itself and the run goes on unchanged;
  the loop then takes the checked records into the planner. Before the loop
  ends a run it takes ``add_lock`` and looks at the mailbox one last time, so
  no task added meanwhile is lost: it either joins this run, or the run is
  over and it waits for the next one.

Pause, abort, cancel
--------------------
* Paused: nothing is dispatched; results of tasks already in the pool are
  still yielded. With nothing in flight the loop blocks on the mailbox
  (``SimpleQueue.get``: no spinning) until a command comes.
* Abort: nothing more is dispatched; ``pool.drop_queued()`` drops what has
  not started; the loop ends once the rest is back. With *force*, each
  running job is stopped where the pool can (``pool.cancel(key, force=True)``):
  their outcomes (``TaskCancelledError``) are not yielded, the tasks are
  skipped, as is every task that did not run.
* Cancel: a task not dispatched leaves the planner; one in the pool is
  dropped if it has not started, else stopped where the pool can (its
  ``TaskRes`` carries ``TaskCancelledError``).

On an event loop
----------------
``Sched.arun()`` runs the very same loop on an event loop's thread (which
is then the driving thread: observers run there). ``adrive``, the async
generator it returns, steps through ``drive(on_loop=True)``, which blocks
nowhere: where ``run()`` would block it yields a request instead, and
``adrive`` awaits it without blocking the loop:

* ``_WAIT``: the jobs dispatched since the last wait are handed to
  ``pool.wait_async`` (an ``AsyncWorkerPool`` runs them on this loop; any
  other pool makes its blocking calls in a thread of the run's own, so the
  loop's own calls to the pool, ``cancel`` and ``drop_queued``, come between
  them, never during one); its outcomes go back in ``waited``.
* ``_IDLE``: paused with nothing in flight, the loop waits for a command:
  ``post`` then also settles the future ``adrive`` awaits (``waker``).
* ``_DUE``: nothing in flight and tasks waiting for the delay of a retry:
  the same wait, up to the time the first of them is due.

Starting and stopping the pool are awaited by ``adrive`` too
(``start_async``, ``stop_async``): ``Sched`` does the rest of beginning and
ending a run the same way for both.

Costs
-----
A run nobody observes builds no ``Event``: one test of a local per task.
Not paused nor told anything: one ``empty()`` per batch. ``status()`` is
O(tasks in the pool + locked resources); ``blocked`` is worked out when it
is first read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from itertools import islice
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any

from pexen.sched._capacity import check_needs
from pexen.sched._errors import SchedulerError, TaskCancelledError, UnrunTasksWarning
from pexen.sched._events import (
    ABORTING,
    DISPATCHED,
    FINISHED,
    NO_ENTRIES,
    PAUSED,
    RESIZED,
    RESUMED,
    RETRYING,
    RUN_STARTED,
    SKIPPED,
    STARTED,
    Event,
    Observer,
    Status,
)
from pexen.sched._graph import check_added
from pexen.sched._planner import DONE, RETRY, RUNNING, Planner, Skip, TaskInfo
from pexen.sched._pools.base import DROPPED, Job, WorkerPool
from pexen.sched._pools.bridge import LOOP_SLICE
from pexen.sched._result import TaskMap, TaskRes, task_key
from pexen.sched._retry import RetryTimer, retry_delay, retryable

if TYPE_CHECKING:
    from pexen.sched._sched import Sched

log = logging.getLogger("pexen.sched")

# TaskRes(...), Job(...) and Event(...) without the named tuples' Python __new__
_new_tuple = tuple.__new__

_UNTOLD = (None,) * 7  # what an outcome of 4 or 6 fields lacks: None
_DROPPED_ON_CANCEL = "cancelled while queued in the pool: dropped before it started"

# commands in the mailbox
_ADD, _PAUSE, _RESUME, _ABORT, _CANCEL, _LOOK = range(6)

# what drive(on_loop=True) asks adrive to await (see "On an event loop")
_WAIT = object()  # the pool's outcomes
_IDLE = object()  # a command
_DUE = object()  # a command, or the time the first retry is due


class LiveRun:
    """The changing state of one run and its loop (see the module docstring)."""

    def __init__(self, sched: Sched, planner: Planner, pool: WorkerPool,
                 provided: set) -> None:
        self.sched = sched
        self.planner = planner
        self.pool = pool
        self.commands: SimpleQueue = SimpleQueue()
        self.dispatched: dict[int, float] = {}  # seq -> when handed to the pool
        # what add_tasks needs, under add_lock
        self.add_lock = threading.Lock()
        self.provided = provided  # tags the run's tasks provide
        self.next_seq = len(planner.infos)
        self.priority_kinds: list[TaskInfo] | None = None  # one task per type
        self.accepting = True  # False once the run ends: added tasks wait
        self.closed = False  # ended early: adding raises
        self.ended = False  # the loop is over: nothing it is told matters now
        # what control calls asked for, read by the loop
        self.paused = False
        self.abort_requested = False
        self.abort_reason: str | None = None
        self.force = False
        # the loop's own view
        self.halted = False  # paused or aborting: dispatch nothing
        self.aborting: str | None = None  # the words of the abort, once handled
        self.dropped_queue = False  # pool.drop_queued() done
        self.forced = False  # running jobs told to stop
        self.stopping: set[int] = set()  # keys told to stop by abort(force=True)
        # keys the pool may report DROPPED, with the reason to skip them with
        self.cancelled: dict[int, str] = {}
        self.key2seq: dict[Any, int] | None = None  # for cancel, made on demand
        self.started_seen: dict[int, str | None] = {}  # seq -> worker (observed)
        self.workers_seen = pool.workers
        self.wall_offset = 0.0
        self.journal: Any = None  # the journal the run resumes from, if any
        self.journal_owned = False  # opened from a path: closed at the end
        self.unobserve: Callable[[], None] | None = None  # the journal's, if added
        # what status() asks the pool: nothing, where it cannot tell anyway
        self.running_of_pool = (
            pool.running if type(pool).running is not WorkerPool.running else None
        )
        # under Sched.arun(): see "On an event loop"
        self.handed: list[Job] = []  # dispatched, for the next wait_async
        self.waited: list = []  # the outcomes of the last wait_async
        self.waker: tuple[asyncio.AbstractEventLoop, asyncio.Future] | None = None
        # tasks waiting for the delay of a retry (made at the first such)
        self.timer: RetryTimer | None = None

    # -- control calls, from any thread ----------------------------------------

    def post(self, *command: Any) -> None:
        self.commands.put(command)
        self.pool.wake()
        waker = self.waker
        if waker is not None:  # adrive awaits a command
            loop, told = waker
            with contextlib.suppress(RuntimeError):  # its loop is closed: no wait
                loop.call_soon_threadsafe(_settle, told)

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            self.post(_PAUSE)

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self.post(_RESUME)

    def abort(self, reason: str | None, force: bool) -> bool:
        if self.ended:
            return False
        if self.abort_requested and (self.force or not force):
            return True
        if not self.abort_requested:
            self.abort_reason = reason
            self.abort_requested = True
        self.force = self.force or force
        self.post(_ABORT)
        return True

    def add(self, tasks: list[Any]) -> bool:
        """Check *tasks* and send them to the loop; False: the run is over."""
        known = self.sched._tasks
        with self.add_lock:
            if self.closed or self.abort_requested:
                how = "aborted" if self.abort_requested else "stopped early"
                raise SchedulerError(
                    f"cannot add tasks to a run that is ending ({how}); add them "
                    f"once it has ended, for the next run"
                )
            if not self.accepting:
                return False
            fresh: dict[Any, Any] = {}
            for task in tasks:
                key = task_key(task)
                if key not in known:
                    fresh.setdefault(key, task)
            if not fresh:
                return True
            seq = self.next_seq
            infos = [TaskInfo(seq + i, task) for i, task in enumerate(fresh.values())]
            if self.priority_kinds is None:
                kinds: dict[type, TaskInfo] = {}
                for info in self.planner.infos[:seq]:
                    kinds.setdefault(type(info.priority), info)
                self.priority_kinds = list(kinds.values())
            check_added(infos, self.provided, self.priority_kinds)
            check_needs(infos, self.sched._capacity)
            for key, task in fresh.items():
                known.setdefault(key, task)
            for info in infos:
                self.provided.update(info.provides)
                if not any(type(info.priority) is type(other.priority)
                           for other in self.priority_kinds):
                    self.priority_kinds.append(info)
            self.next_seq = seq + len(infos)
            self.post(_ADD, infos)
        return True

    # -- the loop ---------------------------------------------------------------

    def drive(self, on_loop: bool = False) -> Generator[Any, None, None]:
        """The generator ``Sched.run()`` returns: start serving, dispatch, wait,
        yield, applying commands between batches; stop the pool at the end.

        *on_loop*: stepped by ``adrive``, which starts and stops the pool;
        where this would block, it yields ``_WAIT`` or ``_IDLE`` instead.
        """
        sched = self.sched
        if not on_loop:
            sched._begin(self)
        finished = False
        try:
            planner, pool = self.planner, self.pool
            infos, pop_ready = planner.infos, planner.pop_ready
            complete = planner.complete
            shared_for, wait = planner.shared_for, pool.wait
            # on a loop, jobs go to the pool with the next wait_async
            submit: Callable[[Job], Any] = (
                self.handed.append if on_loop else pool.submit
            )
            tune = pool.tune if pool.auto_spare is not None else None
            dispatched, commands = self.dispatched, self.commands
            now = time.monotonic
            observers = sched._observers
            offset = 0.0  # wall time - monotonic time, for the events of a batch
            if observers:
                self._emit_run(RUN_STARTED, workers=pool.workers, status=self.status())
            while True:
                if not commands.empty():
                    self._apply_commands()
                observers = sched._observers
                if observers:
                    offset = self.wall_offset = time.time() - now()
                    if pool.workers != self.workers_seen:
                        self.workers_seen = pool.workers
                        self._emit_run(RESIZED, workers=self.workers_seen)
                if not self.halted:
                    if self.timer is not None and self.timer.heap:
                        for due in self.timer.due(now()):
                            planner.retry_now(due)
                    if planner.slots is not None:
                        planner.slots.workers = pool.workers
                    out = len(dispatched)
                    room = pool.capacity - out
                    while room > 0:
                        # spare="auto" hands out a task that takes locks (or
                        # counted resources) only to a free worker or as the
                        # first spare: what it holds must not wait in a queue
                        # behind others
                        info = pop_ready(tune is None or out <= pool.workers)
                        if info is None:
                            break
                        seq = info.seq
                        # the time first: a worker may start the task in submit
                        dispatched[seq] = when = now()
                        submit(_new_tuple(Job, (seq, info.task, info.pass_shared,
                                                info.kwargs, shared_for(info),
                                                info.timeout)))
                        hearing = observers and sched._hearing[DISPATCHED]
                        if hearing:
                            event = _new_tuple(Event, (
                                DISPATCHED, when, when + offset, info.task, None, None,
                                None, None, None, None))
                            for callback in hearing:  # as _tell, inlined
                                try:
                                    callback(event)
                                except Exception:
                                    _report(callback, event)
                        room -= 1
                        out += 1
                if not dispatched:
                    if self.aborting is not None:
                        self.ended = True
                        break
                    if self.halted and self._unfinished():  # paused: sleep until told
                        if on_loop:
                            yield _IDLE
                        else:
                            self._apply(commands.get())
                        self._apply_commands()
                        continue
                    if planner.n_retrying:  # each waits for its delay: so do we
                        if on_loop:
                            yield _DUE
                        else:
                            self._wait_for_retry()
                        continue
                    if self._may_end():
                        break
                    continue
                if on_loop:
                    yield _WAIT
                    outcomes, self.waited = self.waited, []
                else:
                    outcomes = wait()
                if outcomes and len(outcomes[0]) != 7:  # a pool that tells less
                    outcomes = [(*outcome, *_UNTOLD[len(outcome):])
                            for outcome in outcomes]
                if tune is not None:
                    tune(outcomes)
                if self.stopping or self.cancelled:
                    outcomes = self._sift(outcomes)
                if observers:
                    self._look_for_starts()
                seen = self.started_seen  # seq -> worker, of the starts told already
                for key, shared, ret, excinfo, started, duration, worker in outcomes:
                    info = infos[key]
                    del dispatched[key]
                    info.duration = duration
                    if excinfo is not None:
                        if info.retry is not None and self._retry(
                            info, shared, ret, excinfo, started, duration, worker
                        ):
                            continue  # no TaskRes: it runs again
                        info.excinfo = excinfo
                    complete(info, shared, excinfo)
                    task = info.task
                    res = _new_tuple(TaskRes, (task, shared, ret, excinfo))
                    if observers:  # a "started" event unless told already, "finished"
                        if seen and key in seen:
                            worker = seen.pop(key) or worker
                        elif started is not None and sched._hearing[STARTED]:
                            _tell(sched, _new_tuple(Event, (
                                STARTED, started, started + offset, task, worker, None,
                                None, None, None, None)))
                        hearing = sched._hearing[FINISHED]
                        if hearing:
                            end = now() if started is None or duration is None else (
                                started + duration)
                            event = _new_tuple(Event, (
                                FINISHED, end, end + offset, task, worker, res, None,
                                None, None, duration))
                            for callback in hearing:  # as _tell, inlined
                                try:
                                    callback(event)
                                except Exception:
                                    _report(callback, event)
                    yield res
            finished = True
        finally:
            if not on_loop:
                skips = sched._end(self, finished)
        if not on_loop:
            warn_unrun(skips, aborted=self.aborting is not None)

    async def adrive(self) -> AsyncIterator[TaskRes]:
        """The async generator ``Sched.arun()`` returns: ``drive``'s loop, its
        waits awaited (see "On an event loop").

        Every ``LOOP_SLICE`` seconds of handing out results the rest of the
        program gets a turn, so that a consumer awaiting nothing between
        results does not hold the loop for a whole batch.
        """
        sched, pool = self.sched, self.pool
        await sched._abegin(self)
        steps = self.drive(on_loop=True)
        finished = False
        now = time.monotonic
        try:
            pause_at = now() + LOOP_SLICE
            for step in steps:
                if step is _WAIT:
                    handed = self.handed.copy()  # drive appends to this list
                    self.handed.clear()
                    self.waited = await pool.wait_async(handed)
                    pause_at = now() + LOOP_SLICE
                elif step is _IDLE:
                    await self._until_told()
                elif step is _DUE:
                    await self._until_told(self._seconds_to_retry())
                else:
                    yield step
                    if now() >= pause_at:
                        await asyncio.sleep(0)
                        pause_at = now() + LOOP_SLICE
            finished = True
        finally:
            steps.close()
            skips = await sched._aend(self, finished)
        warn_unrun(skips, aborted=self.aborting is not None)

    async def _until_told(self, timeout: float | None = None) -> None:
        """Wait, without blocking the event loop, until a command is posted
        (or *timeout* seconds have passed)."""
        loop = asyncio.get_running_loop()
        told = loop.create_future()
        self.waker = (loop, told)
        try:
            if self.commands.empty():  # else one came before the waker was set
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(told, timeout)
        finally:
            self.waker = None

    def close_journal(self) -> None:
        """Close the journal the run resumes from, if the run opened it."""
        if self.journal_owned:
            self.journal_owned = False
            self.journal.close()

    # -- retries --------------------------------------------------------------

    def _retry(self, info: TaskInfo, shared: dict, ret: Any, excinfo: Any,
               started: float | None, duration: float | None,
               worker: str | None) -> bool:
        """Retry *info*'s failed attempt if its metadata says so (see ``_retry``
        module); else False, and the failure is final."""
        plan = info.retry
        assert plan is not None
        if (
            not plan.left
            or self.aborting is not None
            or not retryable(excinfo[1], plan.retry_on, never=(TaskCancelledError,))
        ):
            return False
        plan.left -= 1
        plan.attempts.append((excinfo, duration))
        failures = len(plan.attempts)
        self.planner.wait_to_retry(info)
        seconds = retry_delay(plan.delay, plan.backoff, failures)
        if seconds:
            if self.timer is None:
                self.timer = RetryTimer(self.pool.wake)
            self.timer.add(info, time.monotonic() + seconds)
        else:
            self.planner.retry_now(info)
        if self.sched._observers:
            total = failures + plan.left
            when = f"in {seconds:g} s" if seconds else "at once"
            reason = (
                f"attempt {failures} of {total + 1} failed "
                f"({type(excinfo[1]).__name__}); it runs again {when}"
            )
            res = _new_tuple(TaskRes, (info.task, shared, ret, excinfo))
            self._emit_retrying(info.seq, res, started, duration, worker, reason)
        return True

    def _seconds_to_retry(self) -> float:
        """How long until the first task waiting for its retry is due (0 for
        one retried at once: it is among the ready tasks already)."""
        timer = self.timer
        due = timer.next_due() if timer is not None else None
        return 0.0 if due is None else max(0.0, due - time.monotonic())

    def _wait_for_retry(self) -> None:
        """Nothing in the pool, tasks waiting to be retried: wait on the
        mailbox until the first is due (a command may come first)."""
        seconds = self._seconds_to_retry()
        if not seconds:
            return
        try:
            command = self.commands.get(timeout=seconds)
        except Empty:
            return
        self._apply(command)
        self._apply_commands()

    def _unfinished(self) -> bool:
        """Whether a task of the run has not ended (and may still run)."""
        total, done, failed, cancelled, _ready = self.planner.counts()
        return total > done + failed + cancelled

    def _may_end(self) -> bool:
        """End the run unless a command came: atomically with ``add``."""
        with self.add_lock:
            if not self.commands.empty():
                return False
            self.accepting = False
            self.ended = True
            return True

    def close(self, finished: bool) -> None:
        """No more tasks may join: the run is over (*finished*: it ran out).

        The retry timer's thread stops; tasks still waiting for their retry
        stay so (the skip reasons say it).
        """
        self.ended = True
        with self.add_lock:
            self.accepting = False
            self.closed = not finished
        if self.timer is not None:
            self.timer.close()

    # -- applying commands, in the loop's thread --------------------------------

    def _apply_commands(self) -> None:
        commands = self.commands
        while not commands.empty():
            self._apply(commands.get())
        # pause() and resume() from two threads may post in another order
        # than they set the flag: the flag, which ``paused`` reports, wins
        if self.halted != self.paused and self.aborting is None:
            self._halt(self.paused)

    def _apply(self, command: tuple) -> None:
        kind = command[0]
        if kind == _ADD:
            self.planner.add(command[1])
            if self.key2seq is not None:
                self.key2seq.update((task_key(i.task), i.seq) for i in command[1])
            self.sched._seq_of = None
        elif kind == _PAUSE:
            self._halt(True)
        elif kind == _RESUME:
            self._halt(False)
        elif kind == _ABORT:
            self._abort()
        elif kind == _CANCEL:
            self._cancel(command[1])
        # _LOOK: only to wake the loop, which then reads the pool's size

    def _halt(self, halted: bool) -> None:
        """Pause (or resume) dispatching, telling observers of each change."""
        if self.aborting is None and halted != self.halted:
            self.halted = halted
            if self.sched._observers:
                self._emit_run(PAUSED if halted else RESUMED)

    def _abort(self) -> None:
        if self.aborting is None:
            reason = self.abort_reason
            self.aborting = "the run was aborted" + (f": {reason}" if reason else "")
            self.halted = True
            if self.sched._observers:
                self._emit_run(ABORTING, reason=reason)
        elif not self.force or self.forced:
            return
        if not self.dropped_queue:
            self.dropped_queue = True
            dropped = f"dropped from the pool's queue: {self.aborting}"
            for key in self.dispatched:  # some may come back DROPPED
                self.cancelled.setdefault(key, dropped)
            for key in self.pool.drop_queued():
                self._dropped(key, f"dropped from the pool's queue: {self.aborting}")
        if self.force:
            self.forced = True
            self.stopping = set(self.dispatched)
            for key in list(self.dispatched):
                if self.pool.cancel(key, force=True):  # it had not started yet
                    self._dropped(key, f"dropped from the pool's queue: "
                                       f"{self.aborting}")

    def _dropped(self, key: int, reason: str) -> None:
        """The pool dropped job *key* before it started: skip its task."""
        if self.dispatched.pop(key, None) is None:
            return
        info = self.planner.infos[key]
        self.planner.drop(info, reason)
        if self.sched._observers:
            self._emit_task(SKIPPED, time.monotonic(), info.task, reason=reason)

    def _cancel(self, key: Any) -> None:
        if self.key2seq is None:
            infos = self.planner.infos
            self.key2seq = {task_key(info.task): info.seq for info in infos}
        seq = self.key2seq.get(key)
        if seq is None:
            return  # added after the run began, for the next run
        info = self.planner.infos[seq]
        if info.state >= DONE:
            return  # finished, or cancelled already
        if info.state == RETRY and self.timer is not None:
            self.timer.remove(info)  # else retried at once: it is READY
        reason = (
            "cancelled while it waited to be retried"
            if info.retry is not None and info.retry.attempts
            else "cancelled before it was dispatched"
        )
        if info.state == RUNNING:
            if seq in self.dispatched:
                if self.pool.cancel(seq, force=True):
                    self._dropped(seq, _DROPPED_ON_CANCEL)
                else:  # an outcome comes: perhaps DROPPED, later
                    self.cancelled[seq] = _DROPPED_ON_CANCEL
            return
        if self.planner.cancel(info, reason) and self.sched._observers:
            self._emit_task(SKIPPED, time.monotonic(), info.task, reason=reason)

    def _sift(self, outcomes: list) -> list:
        """Take out the outcomes of jobs dropped late, or stopped by
        ``abort(force=True)``."""
        kept = []
        for outcome in outcomes:
            key, excinfo = outcome[0], outcome[3]
            if excinfo is DROPPED:
                self._dropped(key, self.cancelled.pop(key, _DROPPED_ON_CANCEL))
            elif key in self.stopping and excinfo is not None and isinstance(
                excinfo[1], TaskCancelledError
            ):
                self.stopping.discard(key)
                info = self.planner.infos[key]
                del self.dispatched[key]
                reason = f"{self.aborting}; {excinfo[1]}"
                self.planner.drop(info, reason, release=False)
                if self.sched._observers:
                    self._emit_task(SKIPPED, time.monotonic(), info.task,
                                    reason=reason)
            else:
                self.cancelled.pop(key, None)
                kept.append(outcome)
        return kept

    # -- events ---------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        _tell(self.sched, event)

    def _emit_run(self, kind: str, reason: str | None = None,
                  workers: int | None = None, status: Status | None = None) -> None:
        if not self.sched._hearing[kind]:
            return
        when = time.monotonic()
        self._emit(_new_tuple(Event, (kind, when, time.time(), None, None, None,
                                      reason, workers, status, None)))

    def _emit_task(self, kind: str, when: float, task: Any, worker: str | None = None,
                   res: TaskRes | None = None, reason: str | None = None,
                   duration: float | None = None) -> None:
        if not self.sched._hearing[kind]:
            return
        self._emit(_new_tuple(Event, (kind, when, when + self.wall_offset, task,
                                      worker, res, reason, None, None, duration)))

    def _look_for_starts(self) -> None:
        """Tell the starts the pool reports that were not told yet."""
        running = self.pool.running()
        if not running:
            return
        seen, infos = self.started_seen, self.planner.infos
        for key, (started, worker) in list(running.items()):
            if key not in seen and key in self.dispatched:
                seen[key] = worker
                self._emit_task(STARTED, started, infos[key].task, worker)

    def _emit_retrying(self, key: int, res: TaskRes, started: float | None,
                       duration: float | None, worker: str | None,
                       reason: str) -> None:
        """Tell the end of an attempt that runs again, as a ``"retrying"``
        event timed and filled as ``"finished"`` is (its start too, if it was
        not told)."""
        seen, task = self.started_seen, res.task
        if key in seen:
            worker = seen.pop(key) or worker
        elif started is not None:
            self._emit_task(STARTED, started, task, worker)
        end = time.monotonic() if started is None or duration is None else (
            started + duration)
        self._emit_task(RETRYING, end, task, worker, res, reason, duration)

    def emit_end(self, skips: list[Skip], status: Status) -> None:
        """The last events: each task skipped, then the end of the run."""
        if not self.sched._observers:
            return
        when = time.monotonic()
        self.wall_offset = time.time() - when
        for skip in skips:
            if skip.waits_for != "cancel":  # cancelled ones were told at once
                self._emit_task(SKIPPED, when, skip.task, reason=skip.reason)
        self._emit_run("run-ended", status=status)

    # -- status ---------------------------------------------------------------

    def status(self) -> Status:
        """A snapshot now (exact from the driving thread; see ``Sched.status``).

        O(workers): the counts are kept as the run goes; ``locks`` and
        ``blocked``, which may be long, are worked out when first read.
        """
        planner, dispatched = self.planner, self.dispatched
        infos = planner.infos
        total, done, failed = len(infos), planner.n_done, planner.n_failed
        cancelled = len(planner.cancelled)
        ready = len(planner.initial) - planner.next_initial + len(planner.heap)
        out = len(dispatched)
        running_of_pool = self.running_of_pool
        running_map = None if running_of_pool is None else running_of_pool()
        if running_map is None:  # the pool cannot tell: the first ones run
            workers = self.pool._workers
            running_tasks: tuple[tuple[Any, float], ...] = ()
            try:
                for seq, when in islice(dispatched.items(), workers):
                    running_tasks += ((infos[seq].task, when),)
            except RuntimeError:  # changed by the loop meanwhile: a copy
                running_tasks = tuple([
                    (infos[seq].task, when)
                    for seq, when in list(dispatched.items())[:workers]
                ])
        else:
            running_tasks = tuple([
                (infos[key].task, started)
                for key, (started, _worker) in list(running_map.items())
                if key in dispatched
            ])
        running = len(running_tasks)
        waiting = total - done - failed - cancelled - out - ready
        return _new_tuple(Status, (
            total, done, failed, running, out - running, ready, max(0, waiting),
            cancelled, running_tasks,
            _Later(self._locks) if planner.lock2count or planner.lock2keepers
            else NO_ENTRIES,
            _Later(self._blocked) if waiting > 0 else NO_ENTRIES,
            self.paused, self.abort_requested,
            planner.capacity_in_use()
            if planner.capacity is not None or planner.slots is not None
            else NO_ENTRIES,
        ))

    def _locks(self) -> dict[Any, tuple[Any, ...]]:
        """Each locked resource and the tasks holding it (``Status.locks``)."""
        infos = self.planner.infos
        holders: dict[Any, list[Any]] = {}
        for seq in list(self.dispatched):
            info = infos[seq]
            for res in (*info.claims, *info.uses):
                holders.setdefault(res, []).append(info.task)
        for res, keepers in list(self.planner.lock2keepers.items()):
            holders.setdefault(res, []).extend(info.task for info in list(keepers))
        return {res: tuple(tasks) for res, tasks in holders.items()}

    def _blocked(self) -> TaskMap:
        """Each waiting task and what it waits for (``Status.blocked``)."""
        infos = self.planner.infos
        return TaskMap((infos[seq].task, waits)
                       for seq, waits in self.planner.waits().items())


def _settle(told: asyncio.Future) -> None:
    """Wake ``adrive`` waiting for a command (in the loop's thread)."""
    if not told.done():
        told.set_result(None)


def _tell(sched: Sched, event: Event) -> None:
    """Call every observer of *sched* that hears *event*'s kind with it;
    report (and survive) their errors. The observers registered now: one
    unregistered mid-batch hears no more."""
    for callback in sched._hearing[event.kind]:
        try:
            callback(event)
        except Exception:
            _report(callback, event)


def _report(callback: Observer, event: Event) -> None:
    """Log what *callback* raised (in an ``except`` block: with its traceback)."""
    log.exception(
        "observer %r raised on a %r event; the run goes on", callback, event.kind
    )


def final_status(planner: Planner, n_skipped: int) -> Status:
    """The status of a run that has ended."""
    return Status(total=len(planner.infos), done=planner.n_done,
                  failed=planner.n_failed, skipped=n_skipped)


class _Later(Mapping):
    """A read-only mapping worked out by *make* when first read."""

    __slots__ = ("_make", "_map")

    def __init__(self, make: Callable[[], Mapping]) -> None:
        self._make: Callable[[], Mapping] | None = make
        self._map: Mapping | None = None

    def _items(self) -> Mapping:
        if self._map is None:
            make = self._make
            assert make is not None
            self._map = make()
            self._make = None  # let the run go
        return self._map

    def __getitem__(self, task: Any) -> tuple[Any, ...]:
        return self._items()[task]

    def __contains__(self, task: object) -> bool:
        return task in self._items()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())

    def __repr__(self) -> str:
        return repr(self._items())


def warn_unrun(skips: list[Skip], aborted: bool) -> None:
    """Warn about the tasks that did not run, but those taken out on purpose
    (by a cancel, or an abort)."""
    unasked = [skip for skip in skips if skip.waits_for != "cancel"]
    if unasked and not aborted:
        _warn_skipped(unasked, cancels=len(skips) > len(unasked), stacklevel=4)


def _warn_skipped(
    skips: list[Skip], cancels: bool = False, stacklevel: int = 3
) -> None:
    """Warn with the counts of the explanations ``Sched.skipped`` gives.

    *cancels*: some tasks were cancelled (and are not among *skips*).
    """
    parts = []
    blamed = "of a failed or cancelled task" if cancels else "of a failed task"
    for with_culprits, what in ((True, blamed), (False, "with no failed task found")):
        kinds = Counter(
            skip.waits_for for skip in skips if bool(skip.culprits) == with_culprits
        )
        if kinds:
            counts = ", ".join(
                f"{n} waiting for a {kind}" for kind, n in sorted(kinds.items())
            )
            parts.append(f"{counts} {what}")
    warnings.warn(
        f"{len(skips)} task{'s' if len(skips) != 1 else ''} did not run "
        f"({'; '.join(parts)}); Sched.skipped says why",
        UnrunTasksWarning,
        stacklevel=stacklevel,
    )
