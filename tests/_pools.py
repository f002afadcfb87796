"""The pools the shared scheduler suite runs on; later pools join this list.

Each entry is ``(id, factory)``; ``factory(workers, spare)`` builds a pool.
The process pool runs under every start method of this platform (SPEC §5,
STYLE 5): tests that pass under ``fork`` alone would hide a task table
inherited by fork, or a task that does not pickle.
"""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

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
    *[_process_kind(method) for method in START_METHODS],
]


def _descendants() -> dict[int, str]:
    """Every process below this one, grandchildren too, with name and state.

    Workers started by the forkserver are its children, not ours: the leak
    check of conftest.py (direct children) cannot see them; this can.
    """
    parent_of: dict[int, int] = {}
    what: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat.rsplit(")", 1)[1].split()
        parent_of[int(entry)] = int(rest[1])
        what[int(entry)] = f"{stat[stat.index('(') + 1 : stat.rindex(')')]} {rest[0]}"
    me = os.getpid()
    below, frontier = {}, [me]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parent_of.items():
            if ppid == parent and pid not in below:
                below[pid] = what[pid]
                frontier.append(pid)
    # CPython's helpers may stay (not their children: a forkserver's workers
    # share its command line)
    return {pid: w for pid, w in below.items()
            if not (parent_of[pid] == me and _helper(pid))}


def _helper(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return False
    return b"forkserver" in cmdline or b"resource_tracker" in cmdline


@pytest.fixture(autouse=True)
def no_orphaned_workers():
    """Fail a test that leaves a worker anywhere below us (import it to use it)."""
    before = set(_descendants())
    yield
    deadline = time.monotonic() + 10.0

    def leaked():
        return {pid: what for pid, what in _descendants().items()
                if pid not in before}

    while leaked():
        if time.monotonic() > deadline:
            pytest.fail(f"processes left behind (grandchildren too): {leaked()}")
        time.sleep(0.01)
