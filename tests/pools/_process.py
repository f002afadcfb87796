"""Helpers of the process pool's tests (tests/pools/test_process_*.py)."""

from __future__ import annotations

import functools
import os
import pathlib

from pexen.sched.meta import assign_val
from tests._leaks import poll

REPO = pathlib.Path(__file__).resolve().parents[2]
DEADLINE = 30.0
poll_for = functools.partial(poll, timeout=DEADLINE)


def exists(pid: int) -> bool:
    """Whether *pid* exists at all, zombie or not."""
    return os.path.exists(f"/proc/{pid}")


def by_task(results):
    return {res.task: res for res in results}


def fresh(fn, **fields):
    """A distinct task calling *fn* (a task object added twice runs once)."""
    task = functools.partial(fn)
    if fields:
        assign_val(task, **fields)
    return task


def with_kwargs(fn, **kwargs):
    task = functools.partial(fn)
    assign_val(task, kwargs=kwargs)
    return task


def held_by_one_worker(pool):
    """The keys the pool's only worker holds now (white box: a precondition)."""
    (worker,) = pool._run.workers
    return list(worker.outstanding)
