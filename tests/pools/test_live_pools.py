"""What each pool does to drive a run live (SPEC §8): the live contract on
every pool, resizing thread and process pools mid-run, and stopping running
tasks where the pool can (a process pool kills the worker, also of a task
stuck in C code, and is usable again).

Worker counts are checked on the pools' own records of live workers (white
box, as a precondition) and by running tasks that can only finish when as
many run at once; nothing sleeps to wait.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import os
import threading
import time
from pathlib import Path

import pytest

from pexen.sched import Sched, TaskCancelledError
from pexen.sched._pools.autoworkers import AutoWorkers
from pexen.sched.meta import assign_val
from pexen.sched.pool import (
    ExecutorWorkerPool,
    InlineWorkerPool,
    ProcessWorkerPool,
    ThreadWorkerPool,
)
from tests._live import blocker, run_live_contract
from tests._pools import POOL_KINDS
from tests.pools._process import poll_for

DEADLOCK = 30.0


@pytest.mark.parametrize("kind", [kind for kind, _ in POOL_KINDS])
def test_the_live_contract(kind, tmp_path):
    make = dict(POOL_KINDS)[kind]
    for workers, spare in ((1, 0), (2, 3)):
        run_live_contract(make(workers, spare), tmp_path / f"{workers}-{spare}",
                          wakes=kind != "inline")


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_the_live_contract_on_an_executor(executor, tmp_path):
    make = cf.ThreadPoolExecutor if executor == "thread" else cf.ProcessPoolExecutor
    with make(2) as ex:
        run_live_contract(ExecutorWorkerPool(ex, spare=2), tmp_path)


def test_the_live_contract_with_spare_auto(tmp_path):
    run_live_contract(ProcessWorkerPool(2), tmp_path)


def _release_all(tmp: Path) -> None:
    (tmp / "release").touch()


def _blockers(tmp: Path, n: int) -> list:
    """*n* tasks that each say they started, then wait for ``tmp/release``."""
    tasks = []
    for i in range(n):
        task = functools.partial(blocker)
        assign_val(task, kwargs={"started": str(tmp / f"started{i}"),
                                 "release": str(tmp / "release")})
        tasks.append(task)
    return tasks


def _n_started(tmp: Path) -> int:
    return sum(1 for p in tmp.iterdir() if p.name.startswith("started"))


def _live_workers(pool) -> int:
    return len([w for w in pool._run.workers if not w.dead and not w.stopping])


def test_resize_a_process_pool_up_and_down_mid_run(method, tmp_path):
    pool = ProcessWorkerPool(1, spare=0, mp_context=method)
    tasks = _blockers(tmp_path, 3)
    s = Sched(tasks)
    events = []
    s.observe(lambda e: e.kind == "resized" and events.append(e.workers))
    grown = []

    def drive():
        assert poll_for(lambda: _n_started(tmp_path) == 1)
        s.resize(3)  # the three can now run at once
        assert poll_for(lambda: _n_started(tmp_path) == 3)
        grown.append(_live_workers(pool))
        pool.workers = 1  # the same, through the pool
        _release_all(tmp_path)

    thread = threading.Thread(target=drive)
    thread.start()
    results = list(s.run(pool=pool))
    thread.join()
    assert len(results) == 3 and not any(res.excinfo for res in results)
    assert grown == [3]
    assert events[0] == 3 and events[-1] == 1
    assert pool.workers == 1


def test_a_shrunk_process_pool_retires_idle_workers_and_keeps_busy_ones(tmp_path):
    pool = ProcessWorkerPool(3, spare=0, mp_context="fork")
    tasks = _blockers(tmp_path, 2)
    s = Sched(tasks)
    counts = []

    def drive():
        assert poll_for(lambda: _n_started(tmp_path) == 2)
        pool.workers = 1  # one idle worker goes now, no running task is stopped
        assert poll_for(lambda: _live_workers(pool) <= 2)
        counts.append(_live_workers(pool))
        _release_all(tmp_path)

    thread = threading.Thread(target=drive)
    thread.start()
    results = list(s.run(pool=pool))
    thread.join()
    assert counts == [2]
    assert not any(res.excinfo for res in results)


def test_resize_a_thread_pool_up_and_down_mid_run():
    barrier = threading.Barrier(3, timeout=DEADLOCK)  # passes only with 3 at once
    tasks = [lambda: barrier.wait() for _ in range(3)]
    pool = ThreadWorkerPool(1, spare=0)
    s = Sched(tasks)
    threads = []

    def pool_threads():
        return [t for t in threading.enumerate()
                if t.name.startswith(f"pexen-worker-{pool._pool_id}.") and t.is_alive()]

    def on_dispatch(event):
        if event.kind == "dispatched" and not threads:
            threads.append(True)
            s.resize(3)

    s.observe(on_dispatch)
    results = list(s.run(pool=pool))
    assert not any(res.excinfo for res in results)
    assert s.status().done == 3
    # and down: a second run, shrunk while it runs; idle threads retire
    gate = threading.Event()
    busy = functools.partial(gate.wait, DEADLOCK)
    s2 = Sched([busy, lambda: 1, lambda: 2])
    gen = s2.run(pool=pool)
    assert sorted(res.ret for res in (next(gen), next(gen))) == [1, 2]
    assert len(pool_threads()) == 3  # one busy, two idle
    pool.workers = 1
    assert poll_for(lambda: len(pool_threads()) == 1)  # the idle ones went
    gate.set()
    (last,) = gen
    assert last.task is busy and last.ret is True  # not stopped


def test_inline_pool_keeps_one_worker():
    from pexen.sched import PoolError

    pool = InlineWorkerPool()
    pool.workers = 1
    with pytest.raises(PoolError, match="runs one task at a time"):
        pool.workers = 2


def stuck_in_c() -> None:
    os.read(os.pipe()[0], 1)  # blocks in C code, for ever


def test_abort_force_kills_a_process_stuck_in_c_code_and_the_pool_goes_on(
    method, tmp_path
):
    pool = ProcessWorkerPool(1, spare=1, mp_context=method)
    stuck = functools.partial(stuck_in_c)
    started = tmp_path / "started0"
    queued = functools.partial(time.time)
    s = Sched([_mark_then(stuck, started), queued])

    def abort():
        assert poll_for(started.exists)
        s.abort("shutting down", force=True)

    thread = threading.Thread(target=abort)
    thread.start()
    assert list(s.run(pool=pool)) == []
    thread.join()
    reasons = dict(s.skipped)
    (stuck_reason,) = [why for task, why in reasons.items() if task is not queued]
    assert stuck_reason.startswith("the run was aborted: shutting down; task ")
    assert "was cancelled while it ran; its worker process (pid " in stuck_reason
    assert "was killed" in stuck_reason
    assert "shutting down" in reasons[queued]
    # the pool serves the next run
    assert [res.ret for res in Sched([functools.partial(int, 7)]).run(pool)] == [7]


def _mark_then(fn, path: Path):
    return functools.partial(_marked, fn, str(path))


def _marked(fn, path: str):
    Path(path).touch()
    return fn()


def test_cancel_a_running_process_task_replaces_its_worker(tmp_path):
    pool = ProcessWorkerPool(1, spare=0, mp_context="forkserver")
    started = tmp_path / "started0"
    stuck = _mark_then(stuck_in_c, started)
    after = functools.partial(os.getpid)
    s = Sched([stuck, after])
    thread = threading.Thread(
        target=lambda: poll_for(started.exists) and s.cancel(stuck)
    )
    thread.start()
    results = list(s.run(pool=pool))
    thread.join()
    assert [res.task for res in results] == [stuck, after]
    exc = results[0].excinfo.val
    assert isinstance(exc, TaskCancelledError)
    assert "its worker process (pid" in str(exc)
    assert results[1].excinfo is None  # on the worker that took its place


def test_cancel_a_job_a_worker_holds_unstarted_drops_it_at_once(tmp_path):
    pool = ProcessWorkerPool(1, spare=2, mp_context="fork")
    first = functools.partial(os.getpid)
    assign_val(first, priority=-1)
    tasks = _blockers(tmp_path, 1)
    held = functools.partial(os.getcwd)
    s = Sched([first, *tasks, held])
    skipped = threading.Event()
    s.observe(lambda e: e.kind == "skipped" and e.task is held and skipped.set())
    gen = s.run(pool=pool)
    assert next(gen).task is first  # when it came back, the rest went out
    assert poll_for(lambda: _n_started(tmp_path) == 1)
    # white box, a precondition: the worker holds the job, not started
    (worker,) = pool._run.workers
    assert list(worker.outstanding) == [1, 2] and worker.slot[0] == 1
    s.cancel(held)
    # the blocker ahead of it is released only once the job was dropped: the
    # pool takes it back from the worker, busy as it is (a ticket, see wire)
    in_time = []
    thread = threading.Thread(target=lambda: (in_time.append(skipped.wait(DEADLOCK)),
                                              _release_all(tmp_path)))
    thread.start()
    results = list(gen)
    thread.join()
    assert in_time == [True], "the cancel waited for the running task to end"
    assert [res.ret for res in results] == ["blocker"]
    assert s.skipped[held] == ("cancelled while queued in the pool: dropped before "
                               "it started")


def test_process_status_tells_running_from_queued(tmp_path):
    pool = ProcessWorkerPool(1, spare=2, mp_context="fork")
    tasks = _blockers(tmp_path, 3)
    s = Sched(tasks)
    workers, looked = [], []
    s.observe(lambda e: e.kind == "started" and workers.append(e.worker))

    def look():
        assert poll_for(lambda: _n_started(tmp_path) == 1)
        assert poll_for(lambda: s.status().running == 1)
        looked.append(s.status())
        _release_all(tmp_path)

    thread = threading.Thread(target=look)
    thread.start()
    list(s.run(pool=pool))
    thread.join()
    (status,) = looked
    assert (status.running, status.queued) == (1, 2)
    assert [task for task, _since in status.running_tasks] == [tasks[0]]
    assert len(workers) == 3
    assert all(w.startswith(f"pexen-worker-{pool.pool_id}.") for w in workers)


class _Fixed:
    """A CPU meter that reads what the test says (the policy's input)."""

    def __init__(self, use):
        self.use = use

    def sample(self):
        return self.use


@pytest.mark.parametrize(
    ("use", "queued", "workers", "expected"),
    [(0.2, True, 2, 3), (0.2, False, 2, 2), (0.8, True, 2, 2), (0.99, True, 2, 1),
     (0.99, True, 1, 1), (0.2, True, 4, 4), (None, True, 2, 2)],
)
def test_auto_workers_policy(use, queued, workers, expected):
    auto = AutoWorkers(limit=4)
    auto.meter = _Fixed(use)
    assert 1 <= auto.initial <= 4
    assert auto.next_workers(workers, queued, auto.next_look - 1) == workers  # early
    assert auto.next_workers(workers, queued, auto.next_look) == expected


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_workers_auto_runs_within_its_bounds(kind):
    make = ThreadWorkerPool if kind == "thread" else ProcessWorkerPool
    pool = make(workers="auto")
    assert repr(pool).startswith(f"{make.__name__}(workers='auto'")
    limit = pool.auto_workers.limit
    assert 1 <= pool.workers <= limit
    seen = []
    s = Sched([functools.partial(int, i) for i in range(50)])
    s.observe(lambda e: seen.append(pool.workers))
    assert sorted(res.ret for res in s.run(pool)) == list(range(50))
    assert all(1 <= n <= limit for n in seen)
    pool.workers = 2  # a count ends "auto"
    assert pool.auto_workers is None and pool.workers == 2
