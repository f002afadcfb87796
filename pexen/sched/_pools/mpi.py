"""A pool on MPI ranks through ``mpi4py.futures.MPIPoolExecutor``.

Jobs travel as in every remote pool (see ``remote``). The executor
is made when a run starts and shut down when it ends. It either spawns its
worker processes (``MPI_Comm_spawn``) or, when the program was started as
``mpiexec -n N python -m mpi4py.futures script.py``, uses ranks 1 to N-1 of
that job; mpi4py decides, the pool is the same.
"""

from __future__ import annotations

from typing import Any

from pexen.sched._pools.base import check_count, sigint_blocked
from pexen.sched._pools.engines import ensure_mpiexec_on_path, import_mpi_futures
from pexen.sched._pools.remote import RemotePool


class MPIWorkerPool(RemotePool):
    """Run tasks on MPI worker processes (``mpi4py.futures``).

    - ``python script.py``: ``workers`` processes are spawned for each run
      (``MPIPoolExecutor(max_workers=workers)``; without ``workers``,
      mpi4py's default: ``MPI4PY_FUTURES_MAX_WORKERS`` or the MPI universe
      size minus one, else 1). A singleton MPI process starts ``mpiexec``
      from PATH to spawn them; the environment's own ``mpiexec`` (the
      ``mpich`` wheel's) is put on PATH when PATH has none.
    - ``mpiexec -n N python -m mpi4py.futures script.py``: the N-1 other ranks
      are the workers and ``workers`` is ignored.

    Guard the script's entry point with ``if __name__ == "__main__":``: mpi4py
    runs the main script in the workers too. ``executor_kwargs`` go to
    ``MPIPoolExecutor``. A task past its ``timeout`` is interrupted with
    ``TaskTimeoutError`` (an alarm signal in the worker). MPI has no way to
    survive a worker that dies: the whole MPI job aborts. A running task
    cannot be stopped: cancelled, it runs to its end; setting ``workers``
    during a run changes how many tasks pexen hands out, not the ranks.
    """

    abandons = False  # shutting the executor down waits for its running tasks

    def __init__(
        self,
        workers: int | None = None,
        spare: int | str = "auto",
        **executor_kwargs: Any,
    ) -> None:
        self._futures = import_mpi_futures()
        if workers is not None:
            check_count("workers", workers, 1)
        super().__init__(workers or 1, spare)
        self._max_workers = workers
        self._executor_kwargs = executor_kwargs

    def __repr__(self) -> str:
        workers = "None" if self._max_workers is None else self._max_workers
        return f"MPIWorkerPool(workers={workers}, spare={self._spare_repr()})"

    def _start(self) -> None:
        super()._start()
        ensure_mpiexec_on_path()
        # Spawning workers starts an mpiexec in our process group: born with
        # SIGINT blocked, it does not answer a Ctrl-C at the terminal by
        # killing the whole MPI job, this process included, with SIGKILL.
        with sigint_blocked():
            self.executor = self._futures.MPIPoolExecutor(
                max_workers=self._max_workers, **self._executor_kwargs
            )
            self._workers = self.executor.num_workers  # waits until they are up

    def _stop(self, cancel: bool) -> None:
        super()._stop(cancel)
        executor, self.executor = self.executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=cancel)
