"""The live contract every pool keeps (SPEC §8), wherever its tasks run.

:func:`run_live_contract` drives three runs on a pool: paused from the loop
body and resumed from another thread; aborted from another thread while the
loop waits on the pool (so the pool's ``wake`` must work); a task cancelled
before it was dispatched. Tasks are module-level functions (they travel to
worker processes, Dask workers and MPI ranks) and meet the test through
files, never sleeping in the test itself. Invariants, not timings: each task
is yielded exactly once or listed in ``skipped``, with the reason given.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from pathlib import Path

from pexen.sched import Sched, TaskRes
from pexen.sched.meta import assign_val

DEADLINE = 60.0  # seconds: only to turn a deadlock into a failure


def _await_file(path: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)  # in the task, not the test: it waits for the test


def quick(*, i: int) -> int:
    return i


def blocker(*, started: str, release: str) -> str:
    """Say it started, then wait until the test releases it."""
    Path(started).touch()
    _await_file(release)
    return "blocker"


def _task(fn, priority: int = 0, **kwargs) -> functools.partial:
    task = functools.partial(fn)  # a distinct object: added twice runs once
    assign_val(task, kwargs=kwargs, priority=priority)
    return task


def _each_once(tasks: list, results: list[TaskRes], sched: Sched) -> None:
    """Every task is yielded exactly once or listed in skipped, not both."""
    yielded = [res.task for res in results]
    for task in tasks:
        n = sum(t is task for t in yielded)
        assert n + (task in sched.skipped) == 1, (task, n, dict(sched.skipped))


def _in_thread(fn) -> threading.Thread:
    thread = threading.Thread(target=fn, name="live-contract")
    thread.start()
    return thread


def run_live_contract(pool, tmp: Path, wakes: bool = True) -> None:
    """Pause/resume, abort from another thread and cancel on *pool*.

    *wakes*: the pool's ``wait()`` can be woken (not the inline pool's, which
    runs the task in the very thread that would take the abort in).
    """
    # paused from the loop body, resumed from another thread
    tasks = [_task(quick, i=i) for i in range(8)]
    sched = Sched(tasks)
    paused = threading.Event()
    sched.observe(lambda e: e.kind == "paused" and paused.set())
    seen = []

    def resume():
        assert paused.wait(DEADLINE)
        seen.append(sched.status())
        sched.resume()

    gen = sched.run(pool)
    results = [next(gen)]
    sched.pause()
    thread = _in_thread(resume)
    results += list(gen)
    thread.join()
    _each_once(tasks, results, sched)
    assert sched.skipped == {}
    assert seen[0].paused
    assert sorted(res.ret for res in results) == list(range(8))

    # aborted from another thread while the loop waits on the pool
    tmp.mkdir(parents=True, exist_ok=True)
    started, release = tmp / "started", tmp / "release"
    first = _task(blocker, priority=-1, started=str(started), release=str(release))
    assign_val(first, provides=["unblocked"])
    tasks = [first, *(_task(quick, i=i) for i in range(20))]
    for task in tasks[1:]:
        assign_val(task, requires=["unblocked"])
    sched = Sched(tasks)
    if wakes:  # the blocker ends once the loop, woken, has taken the abort in
        sched.observe(lambda e: e.kind == "aborting" and release.touch())

    def abort():
        _await_file(str(started))
        sched.abort("the live contract")
        if not wakes:
            release.touch()

    thread = _in_thread(abort)
    results = list(sched.run(pool))
    thread.join()
    _each_once(tasks, results, sched)
    assert [res.task for res in results] == [first]
    assert set(sched.skipped) == set(tasks[1:])
    assert all(why == "not started: the run was aborted: the live contract"
               for why in sched.skipped.values())
    status = sched.status()
    assert (status.done, status.skipped, status.total) == (1, 20, 21)

    # a task cancelled before it was dispatched
    last = _task(quick, priority=1, i=-1)
    tasks = [_task(quick, i=i) for i in range(3)] + [last]
    sched = Sched(tasks)
    gen = sched.run(pool)
    results = [next(gen)]
    sched.cancel(last)
    results += list(gen)
    _each_once(tasks, results, sched)
    if last in sched.skipped:  # unless the pool took it at once (a big spare)
        assert sched.skipped[last] in (
            "cancelled before it was dispatched",
            "cancelled while queued in the pool: dropped before it started",
        )
