"""Worker pools: where tasks run. The scheduler never knows which one it drives."""

from __future__ import annotations

from pexen.sched._inline_pool import InlineWorkerPool
from pexen.sched._pool_base import WorkerPool
from pexen.sched._thread_pool import ThreadWorkerPool

__all__ = ["InlineWorkerPool", "ThreadWorkerPool", "WorkerPool"]
