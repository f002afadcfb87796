"""``--pool``: build the worker pool the command line asks for.

Engines for other machines (Dask, MPI) are imported only when chosen, so
``pexen run`` on threads or processes never pays for them. ``--workers`` and
``--spare`` left out mean: what the pool thinks best (one worker per CPU
here; for Dask, the cluster's own size).
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

from pexen.cli._collect import UsageError
from pexen.cli._console import plural
from pexen.sched import pool as pools
from pexen.sched._pools.base import WorkerPool

# name on the command line -> class name in pexen.sched.pool
_CLASSES = {
    "thread": "ThreadWorkerPool",
    "process": "ProcessWorkerPool",
    "dask": "DaskWorkerPool",
    "mpi": "MPIWorkerPool",
}
_LOCAL = ("thread", "process")

POOLS = tuple(
    name
    for name, cls in _CLASSES.items()
    if name in _LOCAL or cls in getattr(pools, "__all__", ())
)


def available_cpus() -> int:
    """How many CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def make_pool(args: argparse.Namespace) -> WorkerPool:
    """The pool for ``--pool``, ``--workers``, ``--spare`` (and ``--address``)."""
    address = getattr(args, "address", None)
    if address is not None and args.pool != "dask":
        raise UsageError("--address is for --pool dask")
    try:
        cls = getattr(pools, _CLASSES[args.pool])
    except AttributeError:
        raise UsageError(f"--pool {args.pool}: this pexen has no such pool") from None
    kwargs: dict[str, Any] = {}
    if args.spare is not None:
        kwargs["spare"] = args.spare
    if args.pool == "dask" and address is not None:
        if args.workers is not None:
            raise UsageError(
                "--workers sizes a local Dask cluster; with --address the "
                "cluster's workers are used"
            )
        return cls(address=address, **kwargs)
    if args.workers is not None:
        kwargs["workers"] = args.workers
    elif args.pool in _LOCAL:
        kwargs["workers"] = available_cpus()
    return cls(**kwargs)


@contextlib.contextmanager
def importable_in_workers(entries: Sequence[str]) -> Iterator[None]:
    """Put *entries* on ``PYTHONPATH`` while the run lasts.

    Collection put the suite's directories on ``sys.path``; worker processes
    that do not inherit it (MPI spawns them afresh) import the tasks' modules
    through ``PYTHONPATH`` instead.
    """
    if not entries:
        yield
        return
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([*entries, *([saved] if saved else [])])
    try:
        yield
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved


def pool_description(name: str, pool: WorkerPool) -> str:
    """``thread pool, 4 workers``; ``thread pool, 2 workers of the 5 asked for``
    when the system refused to start more threads."""
    workers = pool.workers
    limit = pool.thread_limit if isinstance(pool, pools.ThreadWorkerPool) else None
    if limit is not None and limit < workers:
        return f"{name} pool, {plural(limit, 'worker')} of the {workers} asked for"
    return f"{name} pool, {plural(workers, 'worker')}"
