"""``ProcessWorkerPool``: its configuration, and the run it serves.

The pool object holds what the user chose (``workers``, ``spare``, the start
method, ``max_restarts``, the initializer and finalizer) and stays valid
across runs; each run's state lives
in a :class:`.run.ProcessRun` made by ``start()`` and dropped by ``stop()``.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import multiprocessing.util  # before our atexit hook: see _stop_live_pools
import os
import weakref
from collections.abc import Callable
from typing import Any

from pexen.sched._errors import PoolError
from pexen.sched._pools.autoworkers import usable_cpus
from pexen.sched._pools.base import (
    Job,
    Outcome,
    Running,
    WorkerPool,
    check_count,
    sigint_blocked,
)
from pexen.sched._pools.process.run import ProcessRun
from pexen.sched._pools.process.spawn import resolve_context

_pool_ids = itertools.count(1)
_live_pools: weakref.WeakSet[ProcessWorkerPool] = weakref.WeakSet()

assert multiprocessing.util  # imported for the order of atexit hooks only


class ProcessWorkerPool(WorkerPool):
    """Run tasks in worker processes.

    ``workers`` processes run at once, ``spare`` more jobs wait queued in them.
    *mp_context* is a start method name (``"forkserver"``, ``"spawn"``,
    ``"fork"``) or a multiprocessing context object (a drop-in such as the
    ``multiprocess`` package's works too); the default is
    :func:`default_start_method`. Tasks, kwargs, shared dicts and return
    values must be picklable; lambdas, closures and functions of ``__main__``
    are (cloudpickle). A worker that dies fails the task it ran with
    ``WorkerCrashError`` and is replaced; *max_restarts* (default
    ``4 * workers``) caps the deaths per run no task can be blamed for.
    ``workers="auto"`` adapts the count to keep the CPUs busy (up to twice
    their number); setting ``workers`` during a run starts workers at once, or
    retires idle ones. A cancelled running task has its worker killed (and
    replaced).

    *initializer* (with *initargs*) runs in each worker as it starts, before
    its first task, as in ``concurrent.futures``; one that raises breaks the
    pool: the tasks not yet run fail with ``PoolError``. *finalizer* runs in
    each worker that is stopped in good order (the end of a run, an idle
    worker at a cancel), not in one that is killed. Both are pickled once
    per run. See ``docs/pools.md``.
    """

    auto_workers_allowed = True

    def __init__(
        self,
        workers: int | str = 1,
        spare: int | str = "auto",
        mp_context: Any = None,
        *,
        max_restarts: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple = (),
        finalizer: Callable[[], Any] | None = None,
    ) -> None:
        super().__init__(workers, spare)
        for name, hook in (("initializer", initializer), ("finalizer", finalizer)):
            if hook is not None and not callable(hook):
                raise PoolError(f"{name}={hook!r}: expected a callable or None")
        if not isinstance(initargs, tuple):
            raise PoolError(f"initargs={initargs!r}: expected a tuple")
        self.initializer = initializer
        self.initargs = initargs
        self.finalizer = finalizer
        if os.name != "posix":
            raise PoolError(
                "ProcessWorkerPool needs a POSIX system (Linux, macOS); "
                "use ThreadWorkerPool here"
            )
        self.mp_context = resolve_context(mp_context)
        self.start_method: str = self.mp_context.get_start_method()
        self.max_restarts = (
            4 * self.workers
            if max_restarts is None
            else check_count("max_restarts", max_restarts, 0)
        )
        self.pool_id = next(_pool_ids)
        self._run: ProcessRun | None = None

    def __repr__(self) -> str:
        return (
            f"ProcessWorkerPool(workers={self._workers_repr()}, "
            f"spare={self._spare_repr()}, mp_context={self.start_method!r})"
        )

    def auto_workers_limit(self) -> int:
        return 2 * usable_cpus()

    def submit(self, job: Job) -> None:
        self._serving().submit(job)

    def wait(self) -> list[Outcome]:
        return self._serving().wait()

    # -- driving a run live: see ProcessRun --------------------------------------

    def wake(self) -> None:
        run = self._run
        if run is not None:
            run.wake()

    def cancel(self, key: int, force: bool = False) -> bool:
        return self._serving().cancel(key, force)

    def drop_queued(self) -> list[int]:
        return self._serving().drop_queued()

    def running(self) -> dict[int, Running] | None:
        run = self._run
        return {} if run is None else run.running()

    def _serving(self) -> ProcessRun:
        run = self._run
        if run is None:
            raise PoolError(f"{self!r} is not started")
        return run

    def _start(self) -> None:
        self._run = ProcessRun(self)
        _live_pools.add(self)

    def _stop(self, cancel: bool) -> None:
        run, self._run = self._run, None
        _live_pools.discard(self)
        if run is not None:
            with sigint_blocked():  # a second Ctrl-C waits for the workers to go
                run.stop(cancel)


@atexit.register
def _stop_live_pools() -> None:
    """Stop pools whose run was never finished nor closed, before exit.

    Registered after multiprocessing's own exit hook (imported above), so it
    runs first: that one joins non-daemonic children, which our idle
    workers, waiting for jobs, would never let it finish.
    """
    for pool in list(_live_pools):
        with contextlib.suppress(Exception):  # at exit, nobody is left to tell
            pool.stop(cancel=True)
