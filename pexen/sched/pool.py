"""Worker pools: where tasks run. The scheduler never knows which one it drives."""

from __future__ import annotations

from pexen.sched._pools.base import WorkerPool
from pexen.sched._pools.eventloop import AsyncWorkerPool
from pexen.sched._pools.inline import InlineWorkerPool
from pexen.sched._pools.process import ProcessWorkerPool
from pexen.sched._pools.thread import ThreadWorkerPool

__all__ = [
    "AsyncWorkerPool",
    "InlineWorkerPool",
    "ProcessWorkerPool",
    "ThreadWorkerPool",
    "WorkerPool",
]

# Pools on other engines load on first use, so ``import pexen.sched.pool`` never
# imports Dask or mpi4py (they import their engine only when built).
_LAZY = {
    "ExecutorWorkerPool": "pexen.sched._pools.executor",
    "DaskWorkerPool": "pexen.sched._pools.dask",
    "MPIWorkerPool": "pexen.sched._pools.mpi",
}
__all__ += list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """List the lazy pools too, for ``dir()`` and completion, without loading them."""
    return sorted({*globals(), *_LAZY})
