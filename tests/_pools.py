"""The pools the shared scheduler suite runs on; later pools join this list.

Each entry is ``(id, factory)``; ``factory(workers, spare)`` builds a pool.
"""

from __future__ import annotations

from pexen.sched import pool

POOL_KINDS = [
    ("inline", lambda workers=1, spare=1: pool.InlineWorkerPool()),
    ("thread", lambda workers=1, spare=1: pool.ThreadWorkerPool(workers, spare)),
]
