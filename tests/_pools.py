"""The pools the shared scheduler suite runs on; later pools join this list.

Each entry is ``(id, factory)``; ``factory(workers, spare)`` builds a pool.
The process pool runs under every start method of this platform (SPEC §5,
STYLE 5): tests that pass under ``fork`` alone would hide a task table
inherited by fork, or a task that does not pickle.
"""

from __future__ import annotations

import multiprocessing

from pexen.sched import pool

START_METHODS = [
    method
    for method in ("fork", "forkserver", "spawn")
    if method in multiprocessing.get_all_start_methods()
]


def _process_kind(method: str):
    def make(workers=1, spare=1):
        return pool.ProcessWorkerPool(workers, spare, mp_context=method)

    return (f"process-{method}", make)


POOL_KINDS = [
    ("inline", lambda workers=1, spare=1: pool.InlineWorkerPool()),
    ("thread", lambda workers=1, spare=1: pool.ThreadWorkerPool(workers, spare)),
    ("async", lambda workers=1, spare=1: pool.AsyncWorkerPool(workers, spare)),
    *[_process_kind(method) for method in START_METHODS],
]
