"""Benchmark pexen's pools from processes to a cluster: the table of docs/cluster.md.

For each engine, runs of no-op tasks at two sizes (the fastest of three
each) give the per-task overhead (the slope, so fixed start-up costs drop
out), and a run of ``--cpu-tasks`` tasks of ``--cpu-seconds`` of CPU work
each gives the wall time. The engines: ``ProcessWorkerPool``,
``DaskWorkerPool`` (on a local cluster shared with the raw Dask row, so both
pay the same cluster), raw ``distributed.Client.submit`` + ``as_completed``,
and ``MPIWorkerPool`` (spawned workers). The "first result" column is a
separate run of one no-op task with a fresh pool: the start-up a short run
pays (for Dask, the embedded cluster; for raw Dask, LocalCluster plus
Client).

    python tools/bench_cluster.py [--workers N] [--noop N] [--cpu-tasks N]
    python tools/bench.py --suite cluster     # the same, through bench.py
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import cloudpickle

from pexen.sched import Sched, pool

REPEAT = 3  # no-op runs of each size; the fastest counts (the least disturbed)


def noop() -> None:
    """A task that does nothing: what is left is the pool's overhead."""


def burn(*, seconds: float) -> float:
    """Spin the CPU for *seconds* of this process's CPU time."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    return seconds


if __name__ != "__main__":
    # Imported as a module (tools.bench_cluster): ship the task functions by
    # value, so workers need not find this file on their sys.path.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])


def noop_tasks(n: int) -> list[Any]:
    return [functools.partial(noop) for _ in range(n)]


def cpu_tasks(n: int, seconds: float) -> list[Any]:
    return [functools.partial(burn, seconds=seconds) for _ in range(n)]


def timed_run(make_pool: Callable[[], Any], tasks: list[Any]) -> float:
    """Wall time of one pexen run of *tasks*; every task must succeed."""
    start = time.perf_counter()
    failed = [res for res in Sched(tasks).run(make_pool()) if res.excinfo]
    wall = time.perf_counter() - start
    if failed:
        raise RuntimeError(f"{len(failed)} tasks failed: {failed[0].excinfo.val!r}")
    return wall


class Row:
    """One engine: how to run tasks on it, and its measured figures."""

    def __init__(self, name: str, run: Callable[[list[Any]], float],
                 first: Callable[[], float]) -> None:
        self.name, self.run, self.first = name, run, first
        self.cells: list[str] = []

    def measure(self, opts: argparse.Namespace) -> None:
        self.run(noop_tasks(opts.workers * 4))  # warm up: imports in the workers
        small, large = opts.noop // 5, opts.noop
        t_small = min(self.run(noop_tasks(small)) for _ in range(REPEAT))
        t_large = min(self.run(noop_tasks(large)) for _ in range(REPEAT))
        per_task = (t_large - t_small) / (large - small)
        cpu = self.run(cpu_tasks(opts.cpu_tasks, opts.cpu_seconds))
        first = self.first()
        self.cells = [f"{per_task * 1e6:,.0f}", f"{cpu:.2f}", f"{first:.2f}"]


@contextmanager
def dask_cluster(workers: int) -> Iterator[Any]:
    """A local cluster set up like DaskWorkerPool's embedded one, with a client."""
    import distributed

    with distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True,
        host="127.0.0.1", dashboard_address=":0",
    ) as cluster, distributed.Client(cluster, set_as_default=False) as client:
        yield client


def raw_dask_run(client: Any, tasks: list[Any]) -> float:
    """Wall time of submitting *tasks* straight to Dask and collecting results."""
    import distributed

    start = time.perf_counter()
    futures = [client.submit(task, pure=False) for task in tasks]
    for _future, _result in distributed.as_completed(
        futures, with_results=True, loop=client.loop
    ):
        pass
    return time.perf_counter() - start


def raw_dask_first(workers: int) -> float:
    start = time.perf_counter()
    with dask_cluster(workers) as client:
        raw_dask_run(client, noop_tasks(1))
    return time.perf_counter() - start


def measure_all(opts: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """Measure every engine that is installed; a missing one gets a note."""
    workers = opts.workers
    table: list[tuple[str, list[str]]] = []

    def add(name: str, run: Callable[[list[Any]], float],
            first: Callable[[], float]) -> None:
        row = Row(name, run, first)
        row.measure(opts)
        table.append((name, row.cells))

    process_pool = getattr(pool, "ProcessWorkerPool", None)
    if process_pool is None:
        table.append(("ProcessWorkerPool", ["not available yet"] * 3))
    else:
        def make_process_pool() -> Any:
            return process_pool(workers=workers, spare=1)

        add(f"ProcessWorkerPool(workers={workers})",
            functools.partial(timed_run, make_process_pool),
            lambda: timed_run(make_process_pool, noop_tasks(1)))

    try:
        import distributed  # noqa: F401 - only to know whether Dask is there
    except ImportError:
        table.append(("DaskWorkerPool / raw Dask", ["not installed"] * 3))
    else:
        with dask_cluster(workers) as client:
            def make_dask_pool() -> Any:
                return pool.DaskWorkerPool(client=client)

            add(
                "DaskWorkerPool (local cluster)",
                functools.partial(timed_run, make_dask_pool),
                lambda: timed_run(lambda: pool.DaskWorkerPool(workers=workers),
                                  noop_tasks(1)),
            )
            add("raw Client.submit + as_completed",
                functools.partial(raw_dask_run, client),
                lambda: raw_dask_first(workers))

    try:
        import mpi4py.futures  # noqa: F401 - only to know whether MPI is there
    except ImportError:
        table.append(("MPIWorkerPool", ["not installed"] * 3))
    else:
        def make_mpi_pool() -> Any:
            return pool.MPIWorkerPool(workers=workers)

        add(f"MPIWorkerPool(workers={workers}, spawned)",
            functools.partial(timed_run, make_mpi_pool),
            lambda: timed_run(make_mpi_pool, noop_tasks(1)))
    return table


def format_table(opts: argparse.Namespace, table: list[tuple[str, list[str]]]) -> str:
    head = [
        "engine",
        "per-task overhead, no-op (µs)",
        f"{opts.cpu_tasks} x {opts.cpu_seconds:g} s CPU, wall (s)",
        "first result, fresh pool (s)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([name, *cells]) + " |" for name, cells in table]
    return "\n".join(lines)


def parse(args: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_cluster.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="workers per engine (default: CPU count)")
    parser.add_argument("--noop", type=int, default=1000,
                        help="no-op tasks of the larger overhead run (default 1000)")
    parser.add_argument("--cpu-tasks", type=int, default=32,
                        help="CPU-bound tasks (default 32)")
    parser.add_argument("--cpu-seconds", type=float, default=0.25,
                        help="CPU seconds per CPU-bound task (default 0.25)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, for a smoke test")
    opts = parser.parse_args(args)
    if opts.quick:
        opts.noop, opts.cpu_tasks, opts.cpu_seconds = 100, 8, 0.02
    return opts


def run(args: list[str] | argparse.Namespace | None = None) -> None:
    """Measure every engine once and print the table (Markdown).

    *args* is a command line (a list; None: ``sys.argv``) or the namespace of
    ``tools/bench.py``, whose ``--quick`` is honoured.
    """
    if isinstance(args, argparse.Namespace):
        args = ["--quick"] if getattr(args, "quick", False) else []
    opts = parse(args)
    table = measure_all(opts)
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"{opts.workers} workers per engine")
    print(format_table(opts, table))


if __name__ == "__main__":
    run()
