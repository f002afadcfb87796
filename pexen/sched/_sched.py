"""``Sched``: the generator loop that drives a pool with a planner."""

from __future__ import annotations

import contextlib
import gc
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pexen.sched._errors import SchedulerError, UnrunTasksWarning
from pexen.sched._graph import check_graph
from pexen.sched._planner import DONE, Planner, Skip, TaskInfo
from pexen.sched._pools.base import Job, WorkerPool
from pexen.sched._pools.thread import ThreadWorkerPool
from pexen.sched._result import TaskMap, TaskRes, task_key

# TaskRes(...) and Job(...) without the namedtuples' Python-level __new__
_new_tuple = tuple.__new__


class Sched:
    """Run callables in the order their metadata asks for, yielding results.

    Tasks are kept in the order they were added; adding a task object twice
    keeps it once (a bound method too: ``obj.meth`` twice is one task, the
    first object added). ``run()`` may be called again after a run has
    finished.
    """

    def __init__(self, tasks: Iterable[Any] = ()) -> None:
        self._tasks: dict[Any, Any] = {}  # task_key -> task
        self._shared: dict[str, Any] = {}
        self._running = False
        self._run_lock = threading.Lock()  # check-and-set of _running, atomic
        self._skipped: Mapping[Any, str] = TaskMap()
        self._dispatched: dict[int, float] = {}  # seq -> dispatch time, this run
        self._infos: list[TaskInfo] = []  # the planner's records, last run
        self._seq_of: dict[Any, int] | None = None  # task_key -> seq, last run
        self.add_tasks(tasks)

    def __repr__(self) -> str:
        return f"<Sched with {len(self._tasks)} tasks>"

    def add_tasks(self, tasks: Iterable[Any]) -> None:
        """Add callables to run; one already added is kept once.

        All or nothing: if one of *tasks* is not callable, none is added.
        """
        if self._running:
            raise SchedulerError("cannot add tasks while a run is in progress")
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
        infos = self._infos
        out = list(self._dispatched.items())  # list(): one atomic copy
        return TaskMap((infos[seq].task, when) for seq, when in out)

    def attempts(self, task: Any) -> tuple[tuple[Any, float | None], ...]:
        """How *task* went in the last run: ``(excinfo, duration)`` per attempt.

        ``excinfo`` is None for an attempt that passed, ``duration`` the
        seconds it ran as its pool measured them (None where the pool cannot
        tell). A task that did not run has no attempts. Raise KeyError for a
        task this ``Sched`` does not have.
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
        if info.state < DONE:
            return ()
        return ((info.excinfo, info.duration),)

    def check(self) -> None:
        """Check the task graph now; raise as ``run()`` would before starting."""
        self._plan()

    def _plan(self) -> Planner:
        """The planner of a run, its graph checked (see ``_gc_paused``)."""
        with _gc_paused():
            planner = Planner(self._tasks.values(), self._shared)
            check_graph(planner.infos)
        return planner

    def run(self, pool: WorkerPool | None = None) -> Iterator[TaskRes]:
        """Check the graph, then return a generator yielding a ``TaskRes`` per task.

        While the caller holds a result, no new task is dispatched. Leaving the
        loop early shuts the pool down. The default pool is
        ``ThreadWorkerPool()``: one worker, ``spare="auto"``.
        """
        if self._running:
            raise SchedulerError("this Sched is already running; wait for it to end")
        planner = self._plan()
        if pool is None:
            pool = ThreadWorkerPool()
        elif not isinstance(pool, WorkerPool):
            raise SchedulerError(f"pool={pool!r}: expected a WorkerPool instance")
        return self._drive(planner, pool)

    def _drive(self, planner: Planner, pool: WorkerPool) -> Iterator[TaskRes]:
        with self._run_lock:  # two generators started from two threads: one wins
            if self._running:
                raise SchedulerError(
                    "this Sched is already running; wait for it to end"
                )
            self._running = True
        try:
            pool.start()  # before the run's try: a pool that refuses is not stopped
        except BaseException:
            self._running = False
            raise
        self._skipped = TaskMap()
        finished = False
        infos, pop_ready, complete = planner.infos, planner.pop_ready, planner.complete
        shared_for, submit, wait = planner.shared_for, pool.submit, pool.wait
        tune = pool.tune if pool.auto_spare is not None else None
        dispatched: dict[int, float] = {}  # seq -> when it was handed to the pool
        now = time.monotonic
        self._infos = infos  # first: in_flight, in another thread, reads both
        self._seq_of = None
        self._dispatched = dispatched
        try:
            while True:
                out = len(dispatched)
                room = pool.capacity - out
                while room > 0:
                    # spare="auto" hands out a task that takes locks only to
                    # a free worker or as the first spare: held locks must
                    # not wait in a queue behind others
                    info = pop_ready(tune is None or out <= pool.workers)
                    if info is None:
                        break
                    seq = info.seq
                    submit(_new_tuple(Job, (seq, info.task, info.pass_shared,
                                            info.kwargs, shared_for(info),
                                            info.timeout)))
                    dispatched[seq] = now()
                    room -= 1
                    out += 1
                if not dispatched:
                    break
                outcomes = wait()
                if outcomes and len(outcomes[0]) == 4:  # a pool that does not time
                    outcomes = [(*outcome, None, None) for outcome in outcomes]
                if tune is not None:
                    tune(outcomes)
                for key, shared, ret, excinfo, _started, duration in outcomes:
                    info = infos[key]
                    del dispatched[key]
                    info.duration = duration
                    if excinfo is not None:
                        info.excinfo = excinfo
                    complete(info, shared, excinfo)
                    yield _new_tuple(TaskRes, (info.task, shared, ret, excinfo))
            finished = True
        finally:
            try:
                pool.stop(cancel=not finished)
            finally:
                skips = planner.skips(stopped=not finished)
                self._skipped = TaskMap((skip.task, skip.reason) for skip in skips)
                self._dispatched = {}
                self._running = False
        if skips:
            _warn_skipped(skips)


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


def _warn_skipped(skips: list[Skip]) -> None:
    """Warn with the counts of the explanations ``Sched.skipped`` gives."""
    parts = []
    for with_culprits, what in ((True, "of a failed task"),
                                (False, "with no failed task found")):
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
        stacklevel=3,
    )
