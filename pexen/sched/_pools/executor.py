"""``ExecutorWorkerPool``: tasks on a ``concurrent.futures``-style executor you own.

Jobs travel as in every remote pool (:mod:`pexen.sched._pools.remote`).
"""

from __future__ import annotations

from typing import Any

from pexen.sched._errors import PoolError
from pexen.sched._pools.remote import RemotePool


def executor_workers(executor: Any) -> int:
    """How many jobs *executor* runs at once, where it says so; else 1."""
    for attr in ("num_workers", "_max_workers"):  # mpi4py; stdlib and loky
        value = getattr(executor, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
    return 1


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
    reported when it returns in a thread. On Dask's executor
    (``Client.get_executor()``) a task runs at most once, as on
    ``DaskWorkerPool``: one whose worker died fails with ``WorkerCrashError``.
    A task that has not started can be cancelled (``Sched.cancel``,
    ``Sched.abort``); a running one cannot be stopped, so a forced cancel
    abandons it to your executor. Setting ``workers`` changes how many tasks
    pexen hands out at once.
    """

    def __init__(
        self, executor: Any, workers: int | None = None, spare: int | str = "auto"
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
        if type(executor).__module__.partition(".")[0] == "distributed":
            # Client.get_executor(): Dask runs a task again when its worker
            # dies; at most once per attempt, as on DaskWorkerPool
            from distributed import KilledWorker

            from pexen.sched._pools.dask import StartedBefore, run_job_once

            self.job_runner = run_job_once
            self.crash_types = (*self.crash_types, KilledWorker, StartedBefore)

    def __repr__(self) -> str:
        return (
            f"ExecutorWorkerPool({self.executor!r}, workers={self.workers}, "
            f"spare={self._spare_repr()})"
        )
