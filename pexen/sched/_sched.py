"""``Sched``: the public face of a run; its loop lives in ``_live``.

``run()`` and ``arun()`` drive one and the same loop, ``arun()`` from an
event loop; they differ only in how the pool is started, waited for and
stopped (see ``_live``, "On an event loop").
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from types import FunctionType, MethodType
from typing import Any

from pexen.sched._capacity import check_capacity, check_needs
from pexen.sched._errors import SchedulerError
from pexen.sched._events import KINDS, Event, Observer, Status
from pexen.sched._graph import check_graph
from pexen.sched._live import _CANCEL, _LOOK, LiveRun, final_status
from pexen.sched._order import check_order
from pexen.sched._planner import CANCELLED, CARRIED, DONE, Planner, Skip, TaskInfo
from pexen.sched._pools.base import WorkerPool, check_count
from pexen.sched._pools.thread import ThreadWorkerPool
from pexen.sched._result import TaskMap, TaskRes, task_key


class Sched:
    """Run callables in the order their metadata asks for, yielding results.

    Tasks are kept in the order they were added; adding a task object twice
    keeps it once (a bound method too: ``obj.meth`` twice is one task, the
    first object added). ``run()`` may be called again after a run has
    finished. A run can be driven while it goes on, from any thread:
    ``add_tasks``, ``pause``/``resume``, ``abort``, ``cancel``, ``resize``,
    ``observe`` and ``status``.

    *capacity* maps counted resources to how much there is of each
    (``{"gpu": 2, "mem_gb": 16}``), for the tasks' ``needs``; *order* is how
    ready tasks of equal priority go: ``"priority"`` (in the order of
    adding), ``"critical-path"`` (the longest chain of ``cost`` behind them
    first) or ``"longest-first"`` (the highest ``cost`` first).
    """

    def __init__(
        self,
        tasks: Iterable[Any] = (),
        *,
        capacity: Mapping[Any, Any] | None = None,
        order: str = "priority",
    ) -> None:
        self._capacity = check_capacity(capacity)
        self._order = check_order(order)
        self._tasks: dict[Any, Any] = {}  # task_key -> task
        self._shared: dict[str, Any] = {}
        self._running = False
        self._run_lock = threading.Lock()  # check-and-set of _running, atomic
        self._skipped: Mapping[Any, str] = TaskMap()
        self._live: LiveRun | None = None  # the run in progress
        self._last_status = Status()
        # every observer, and those that hear each kind of event (replaced
        # together, under the lock, never changed)
        self._observers: tuple[Observer, ...] = ()
        self._hearing: dict[str, tuple[Observer, ...]] = dict.fromkeys(KINDS, ())
        self._kinds_of: tuple[tuple[Observer, frozenset[str]], ...] = ()
        self._observers_lock = threading.Lock()
        self._infos: list[TaskInfo] = []  # the planner's records, last run
        self._seq_of: dict[Any, int] | None = None  # task_key -> seq, last run
        self.add_tasks(tasks)

    def __repr__(self) -> str:
        return f"<Sched with {len(self._tasks)} tasks>"

    def add_tasks(self, tasks: Iterable[Any]) -> None:
        """Add callables to run; one already added is kept once.

        All or nothing: if one of *tasks* is not callable, none is added.
        During a run they join it: checked at once against the run's tasks
        (``DepcheckError`` for a tag that nothing in the run provides or a
        new cycle; the run goes on unchanged); ``SchedulerError`` if the run
        is ending (aborted, or its generator closed).
        """
        if callable(tasks) and not hasattr(tasks, "__iter__"):
            raise SchedulerError(
                f"expected an iterable of tasks, got the single task {tasks!r}; "
                "wrap it in a list: [task]"
            )
        try:
            new = list(tasks)
        except TypeError:
            raise SchedulerError(
                f"expected an iterable of tasks, got {type(tasks).__name__} {tasks!r}"
            ) from None
        for task in new:
            if not callable(task):
                raise SchedulerError(f"task {task!r} is not callable")
        run = self._live
        if run is not None and run.add(new):
            return
        known = self._tasks
        for task in new:
            known.setdefault(task_key(task), task)

    def add_shared(self, **values: Any) -> None:
        """Preset keys of the shared dict every task starts with."""
        self._shared.update(values)

    @property
    def skipped(self) -> Mapping[Any, str]:
        """Each task the last run did not run, mapped to the reason in words.

        A read-only mapping keyed by task identity (tasks need not be hashable).
        """
        return self._skipped

    @property
    def in_flight(self) -> Mapping[Any, float]:
        """Tasks handed to the pool and not yet finished, with their dispatch time.

        Times are ``time.monotonic()`` values; a progress display can show how
        long each task has been out. Spare tasks queued in the pool count too.
        Keyed by task identity, like ``skipped``.
        """
        run = self._live
        if run is None:
            return TaskMap()
        infos = run.planner.infos
        out = list(run.dispatched.items())  # list(): one atomic copy
        return TaskMap((infos[seq].task, when) for seq, when in out)

    def attempts(self, task: Any) -> tuple[tuple[Any, float | None], ...]:
        """How *task* went in the last run: ``(excinfo, duration)`` per attempt.

        ``excinfo`` is None for an attempt that passed, ``duration`` the
        seconds it ran as its pool measured them (None where the pool cannot
        tell). A task retried has one pair per attempt, its last attempt's
        last (during a run: the attempts so far). A task that did not run has
        no attempts. Raise KeyError for a task this ``Sched`` does not have.
        """
        key = task_key(task)
        if key not in self._tasks:
            raise KeyError(task)
        infos = self._infos
        if self._seq_of is None:  # once per run, on the first question
            self._seq_of = {task_key(info.task): info.seq for info in infos}
        seq = self._seq_of.get(key)
        if seq is None:
            return ()  # added after the last run
        info = infos[seq]
        retry = info.retry
        tried = tuple(retry.attempts) if retry is not None else ()  # retried ones
        if info.state < DONE or info.state in (CANCELLED, CARRIED):
            return tried
        return (*tried, (info.excinfo, info.duration))

    # -- driving a run live ------------------------------------------------------

    @property
    def paused(self) -> bool:
        """Whether the run in progress is paused (False with no run)."""
        run = self._live
        return run is not None and run.paused

    def pause(self) -> None:
        """Dispatch nothing until ``resume()``; tasks in the pool finish and
        are yielded. Safe from any thread and a signal handler; idempotent; no
        run in progress: nothing."""
        run = self._live
        if run is not None:
            run.pause()

    def resume(self) -> None:
        """Dispatch again after ``pause()``. Safe anywhere; idempotent."""
        run = self._live
        if run is not None:
            run.resume()

    def abort(self, reason: str | None = None, *, force: bool = False) -> bool:
        """End the run in progress: dispatch nothing more, drop what is queued.

        The generator ends once the running tasks are done; with *force* they
        are stopped where the pool can (a process pool kills their workers, a
        thread pool abandons their threads). Every task that did not finish is
        then in ``skipped``, its reason containing *reason*. Safe from any
        thread, a signal handler, an observer and the loop body; no run in
        progress: nothing. Return whether a run took it in (False: no run, or
        one whose loop is over, shutting its pool down).
        """
        run = self._live
        if run is None:
            return False
        return run.abort(None if reason is None else str(reason), force)

    def cancel(self, task: Any) -> None:
        """Take *task* out of the run in progress.

        Not dispatched yet: it is skipped (the reason says cancelled), and so
        are the tasks requiring what only it provides. Queued in the pool: it
        is dropped, likewise. Running: it is stopped where the pool can, and
        its ``TaskRes`` carries ``TaskCancelledError``. Finished, or no run in
        progress: nothing. Raise KeyError for a task this ``Sched`` does not
        have.
        """
        key = task_key(task)
        if key not in self._tasks:
            raise KeyError(task)
        run = self._live
        if run is not None:
            run.post(_CANCEL, key)

    def resize(self, workers: int) -> None:
        """Set the worker count of the run's pool (``pool.workers = workers``).

        More workers start at once; with fewer, idle workers retire first and
        no running task is stopped. No run in progress: nothing (set
        ``pool.workers`` on the pool for its next run).
        """
        check_count("workers", workers, 1)
        run = self._live
        if run is not None:
            run.pool.workers = workers
            run.post(_LOOK)

    def observe(
        self, callback: Callable[[Event], Any], kinds: Iterable[str] | None = None
    ) -> Callable[[], None]:
        """Call *callback(event)* for each change of every run; return a
        function that unregisters it.

        Callbacks run in the thread that drives the run, in event order; an
        exception in one is logged (logger ``pexen.sched``) and the run goes
        on. See ``Event`` for the kinds of events. *kinds* limits the events
        the callback hears to those kinds (default: the ``event_kinds`` its
        class declares, as ``Journal`` does; else every kind): an event no
        callback hears is not even built.
        """
        if not callable(callback):
            raise SchedulerError(f"observe() takes a callable, got {callback!r}")
        # this registration, apart from any other of the same callback
        entry = (_direct(callback), _heard_kinds(callback, kinds))
        with self._observers_lock:
            self._set_observers((*self._kinds_of, entry))

        def unregister() -> None:
            with self._observers_lock:
                kinds_of = self._kinds_of
                if any(registered is entry for registered in kinds_of):
                    self._set_observers(tuple(
                        registered for registered in kinds_of if registered is not entry
                    ))

        return unregister

    def _set_observers(
        self, kinds_of: tuple[tuple[Observer, frozenset[str]], ...]
    ) -> None:
        """Register *kinds_of* (each observer and the kinds it hears) as the
        observers (under the lock)."""
        self._hearing = {
            kind: tuple(call for call, heard in kinds_of if kind in heard)
            for kind in KINDS
        }
        self._observers = tuple(call for call, _ in kinds_of)
        self._kinds_of = kinds_of

    def status(self) -> Status:
        """A snapshot of the run in progress, or of the last run.

        O(1) counts plus the tasks in the pool and the locked resources, so it
        may be called after every result. Exact when called from the thread
        that drives the run (the loop body, an observer); from another thread
        each figure is exact at the moment it is read while the run moves on.
        """
        run = self._live
        if run is None:
            return self._last_status
        return run.status()

    # -- running -------------------------------------------------------------------

    def check(self) -> None:
        """Check the task graph now; raise as ``run()`` would before starting."""
        self._plan()

    def _plan(self) -> tuple[Planner, set]:
        """The planner of a run, its graph checked (see ``_gc_paused``), and the
        tags its tasks provide."""
        with _gc_paused():
            planner = Planner(
                self._tasks.values(), self._shared, self._capacity, self._order
            )
            provided = check_graph(planner.infos)
            check_needs(planner.gated, self._capacity)
            planner.apply_order()
        return planner, provided

    def run(
        self, pool: WorkerPool | None = None, *, resume: Any = None
    ) -> Iterator[TaskRes]:
        """Check the graph, then return a generator yielding a ``TaskRes`` per task.

        While the caller holds a result, no new task is dispatched. Leaving the
        loop early shuts the pool down. The default pool is
        ``ThreadWorkerPool()``: one worker, ``spare="auto"``.

        *resume*, a journal's path or a ``pexen.journal.Journal``, resumes its
        last run: the tasks that passed there are not run again (no
        ``TaskRes``, no attempts), their tags count as provided and their
        dependents get the shared state they recorded.
        """
        self._refuse_if_running()
        # planned here, so that the graph's warnings point at our caller; the
        # run's own generator: no second one around it, whose every step
        # would cost each result a hand-over
        return self._prepare(self._plan(), pool, resume).drive()

    def arun(
        self, pool: WorkerPool | None = None, *, resume: Any = None
    ) -> AsyncIterator[TaskRes]:
        """As ``run()``, for event-loop programs: ``async for res in s.arun()``.

        The same run, driven live the same way (its observers are called in
        the loop's thread). The loop never blocks on the pool: an
        ``AsyncWorkerPool`` runs its coroutines on this very loop, any other
        pool is waited for from a thread of the run's own. While the consumer
        holds a result, no new task is dispatched. Cancelling the task that
        consumes it, or leaving the ``async for`` early, stops the run as
        leaving ``run()``'s loop does (``contextlib.aclosing`` makes that
        happen at once, rather than when the generator is collected).
        """
        self._refuse_if_running()
        return self._prepare(self._plan(), pool, resume).adrive()

    def _refuse_if_running(self) -> None:
        if self._running:
            raise SchedulerError("this Sched is already running; wait for it to end")

    def _prepare(
        self, plan: tuple[Planner, set], pool: WorkerPool | None, resume: Any
    ) -> LiveRun:
        """Check the arguments of ``run()``; the run of *plan*, not begun."""
        planner, provided = plan
        if pool is None:
            pool = ThreadWorkerPool()
        elif not isinstance(pool, WorkerPool):
            raise SchedulerError(f"pool={pool!r}: expected a WorkerPool instance")
        journal, owned = None, False
        if resume is not None:
            journal, owned = _resume_journal(resume)
            try:
                _carry(planner, journal)
            except BaseException:
                if owned:
                    journal.close()
                raise
        run = LiveRun(self, planner, pool, provided)
        run.journal, run.journal_owned = journal, owned
        return run

    def _begin(self, run: LiveRun) -> None:
        """Start serving *run*, from its generator's first step."""
        with self._beginning(run):
            run.pool.start()

    async def _abegin(self, run: LiveRun) -> None:
        """``_begin`` for ``arun()``: the pool started without blocking the loop."""
        with self._beginning(run):
            await run.pool.start_async()

    @contextlib.contextmanager
    def _beginning(self, run: LiveRun) -> Iterator[None]:
        """Claim this Sched for *run*, let the caller start the pool, serve it."""
        with self._run_lock:  # two generators started from two threads: one wins
            if self._running:
                raise SchedulerError(
                    "this Sched is already running; wait for it to end"
                )
            self._running = True
        try:
            yield  # the pool starts: before the run's try, so that a pool that
        except BaseException:  # refuses is not stopped
            self._running = False
            run.close_journal()
            raise
        # the journal a run resumes from records it, carried tasks and all
        journal = run.journal
        if journal is not None and _direct(journal) not in self._observers:
            run.unobserve = self.observe(journal)
        self._skipped = TaskMap()
        self._infos = run.planner.infos  # first: in_flight, in another thread,
        self._seq_of = None  # reads both
        self._live = run

    def _end(self, run: LiveRun, finished: bool) -> list[Skip]:
        """Stop *run*'s pool and say what did not run; *finished*: it ran out."""
        skips: list[Skip] = []
        with self._ending(run, finished, skips) as cancel:
            run.pool.stop(cancel=cancel)
        return skips

    async def _aend(self, run: LiveRun, finished: bool) -> list[Skip]:
        """``_end`` for ``arun()``: the pool stopped without blocking the loop."""
        skips: list[Skip] = []
        with self._ending(run, finished, skips) as cancel:
            await run.pool.stop_async(cancel=cancel)
        return skips

    @contextlib.contextmanager
    def _ending(
        self, run: LiveRun, finished: bool, skips: list[Skip]
    ) -> Iterator[bool]:
        """End *run*: the caller stops the pool (with cancel if told so), then
        *skips* gets what did not run, and the observers the end."""
        run.close(finished)
        planner = run.planner
        try:  # an aborted run ended early too: what waits in the pool goes
            yield not finished or run.aborting is not None
        finally:
            skips += planner.skips(stopped=not finished, aborted=run.aborting)
            self._skipped = TaskMap((skip.task, skip.reason) for skip in skips)
            self._last_status = final_status(planner, len(skips))
            self._live = None
            self._running = False
        try:
            run.emit_end(skips, self._last_status)
        finally:
            if run.unobserve is not None:
                run.unobserve()
            run.close_journal()


def _resume_journal(resume: Any) -> tuple[Any, bool]:
    """The journal *resume* names, and whether it was opened here (to close)."""
    from pexen.journal import Journal  # the journal is sqlite3's: only when asked

    if isinstance(resume, Journal):
        return resume, False
    if isinstance(resume, (str, os.PathLike)):
        return Journal.existing(resume), True
    raise SchedulerError(
        f"resume={resume!r}: expected a journal's path or a pexen.journal.Journal"
    )


def _carry(planner: Planner, journal: Any) -> None:
    """Carry into *planner* what passed in the last run of *journal*."""
    infos = planner.infos
    plan = journal.plan(info.task for info in infos)
    journal.carry(plan)
    carried = {task_key(d.task): d.shared or {} for d in plan.carried}
    planner.carry({
        info.seq: carried[key] for info in infos
        if (key := task_key(info.task)) in carried
    })


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile (if it was on, it is on after).

    Planning a run and checking its graph make records per task, all of them
    kept for the run: a burst of long-lived objects, which the collector
    would scan over and over as they pile up (a million tasks: about 1 us
    each, of 1.7 to plan). Nothing of it is garbage, so there is nothing to
    collect.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _heard_kinds(callback: Observer, kinds: Iterable[str] | None) -> frozenset[str]:
    """The kinds of events *callback* hears: *kinds*, else the ``event_kinds``
    its class declares, else every kind; an unknown kind is an error.

    The class is asked, not the object, and without ``__getattr__``: a mock
    or a proxy answers every attribute, and must hear every kind."""
    given = "kinds"
    if kinds is None:
        kinds = inspect.getattr_static(type(callback), "event_kinds", None)
        given = f"{type(callback).__name__}.event_kinds"
    if kinds is None:
        return frozenset(KINDS)
    if isinstance(kinds, str):
        kinds = (kinds,)
    try:
        heard = frozenset(kinds)
    except TypeError:
        raise SchedulerError(
            f"observe(): {given} must be a kind of event or several, got {kinds!r}"
        ) from None
    unknown = sorted(map(repr, heard.difference(KINDS)))
    if unknown:
        raise SchedulerError(
            f"observe(): no event is of kind {', '.join(unknown)} (in {given}); the "
            f"kinds are {', '.join(map(repr, KINDS))}"
        )
    return heard


def _direct(callback: Observer) -> Observer:
    """What to call for *callback*: an object whose class defines
    ``__call__`` in Python (a ``Journal``, a ``ChromeTrace``) as the bound
    method, which a call reaches at once, where calling the object looks
    ``__call__`` up each time (a third of a journal's cost of observing a
    no-op task); anything else as it is. Equal for equal callbacks, so
    ``unregister`` finds it."""
    call = type(callback).__call__  # callable: observe() checked
    if type(callback) is not FunctionType and type(call) is FunctionType:
        return MethodType(call, callback)
    return callback
